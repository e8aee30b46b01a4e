"""Row ids: time-ordered UUIDs (version 7, RFC 9562).

A random UUID (version 4) as a primary key lands each insert on a random page of the key's index, so a batch of
n messages dirties about n index pages per keyed table, and each commit writes them all. A version-7 UUID starts
with the time in milliseconds, so new rows go to the right edge of the index: a batch dirties a page or two.
Measured on SQLite with batches of 32 messages, an enqueue costs 20-40 % less CPU than with random ids.
Within a process, ids are strictly increasing (a counter orders those of one millisecond); the 62 random bits
keep ids unique across processes and machines without coordination. The random bits come from the operating
system's generator, read 4 KiB at a time: one ``getrandom`` call cost ~20 µs on the virtual machines measured, more
than the rest of making an id; a forked child starts with a fresh buffer, never its parent's bytes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["new_id", "new_token"]

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


_RANDOM_CHUNK = 4096

_last_ms = 0
_counter = 0
_lock = threading.Lock()
_random = b""
_random_at = 0


def _forget_random() -> None:
    global _random, _random_at
    _random, _random_at = b"", 0


os.register_at_fork(after_in_child=_forget_random)  # a child must not hand out its parent's random bits again


def new_id() -> str:
    """A new time-ordered row id, as the 36-character UUID text.

    Ids made by one process are strictly increasing, even within a millisecond: the 12 bits after the version hold
    a counter (RFC 9562 §6.2, method 1), started at a random value below 2048 in each new millisecond and
    incremented within it; when it runs out the timestamp is advanced by one millisecond.
    """
    global _last_ms, _counter, _random, _random_at
    with _lock:
        if _random_at >= len(_random):
            _random, _random_at = os.urandom(_RANDOM_CHUNK), 0
        random = int.from_bytes(_random[_random_at : _random_at + 8], "big")
        _random_at += 8
        milliseconds = time.time_ns() // 1_000_000
        if milliseconds > _last_ms:
            _last_ms, _counter = milliseconds, random >> 53  # 11 random bits: room to count in the millisecond
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        milliseconds, counter = _last_ms, _counter
    value = (milliseconds & (2**48 - 1)) << 80 | _VERSION | counter << 64 | _VARIANT | random & (2**62 - 1)
    return str(uuid.UUID(int=value))


def new_token() -> str:
    """A new random token (lease fences): nothing about it is predictable."""
    return str(uuid.uuid4())
