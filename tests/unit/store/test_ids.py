"""Row ids are version-7 UUIDs: valid, unique, and ordered by creation time."""

from __future__ import annotations

import os
import time
import uuid

from botfactory.store.ids import new_id, new_token


def test_a_row_id_is_a_version_7_uuid_carrying_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    parsed = uuid.UUID(new_id())
    after = time.time_ns() // 1_000_000
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_row_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first < second


def test_row_ids_are_unique_within_one_millisecond() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(value) == 36 for value in ids)


def test_row_ids_of_one_process_strictly_increase_even_within_a_millisecond() -> None:
    ids = [new_id() for _ in range(20_000)]  # thousands per millisecond: the counter orders them
    assert ids == sorted(ids)
    assert all(uuid.UUID(value).version == 7 for value in ids[::997])


def test_a_token_is_a_random_uuid() -> None:
    assert uuid.UUID(new_token()).version == 4
    assert new_token() != new_token()


def test_row_ids_stay_unique_across_many_refills_of_the_random_buffer() -> None:
    ids = [new_id() for _ in range(3 * 4096 // 8 + 7)]  # the random bits are read from the OS 4 KiB at a time
    random_bits = {uuid.UUID(value).int & (2**62 - 1) for value in ids}
    assert len(random_bits) == len(ids)


def test_a_forked_child_does_not_reuse_its_parents_random_bits() -> None:
    new_id()  # the parent's buffer holds unused bytes now
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the random bits of its next id, then leave without running pytest's cleanup
        os.write(writing, str(uuid.UUID(new_id()).int & (2**62 - 1)).encode())
        os._exit(0)
    os.close(writing)
    os.waitpid(pid, 0)
    child = int(os.read(reading, 64))
    os.close(reading)
    assert child != uuid.UUID(new_id()).int & (2**62 - 1)  # what the parent's buffer hands out next
