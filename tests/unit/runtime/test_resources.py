"""Session resources: kept warm between a session's turns, released (and closed) once idle, never while busy."""

from __future__ import annotations

import pytest

from botfactory.runtime import SessionResources


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class AsyncThing:
    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True


class SyncThing:
    def __init__(self, fail: bool = False) -> None:
        self.closed = False
        self.fail = fail

    def close(self) -> None:
        if self.fail:
            raise OSError("already gone")
        self.closed = True


async def test_only_sessions_idle_for_the_timeout_are_released_and_their_values_closed() -> None:
    clock = Clock()
    resources = SessionResources(idle_timeout_s=60, clock=clock)
    old = resources.for_session("old")
    old.update(client=AsyncThing(), cache=SyncThing(), plain=42)
    clock.now += 30
    recent = resources.for_session("recent")
    recent["client"] = AsyncThing()

    clock.now += 30
    assert await resources.release_idle() == ["old"]
    assert old["client"].closed and old["cache"].closed
    assert "old" not in resources and "recent" in resources and not recent["client"].closed
    assert resources.for_session("old") == {}  # a new turn starts afresh


async def test_a_session_in_use_is_kept_however_long_and_touch_restarts_the_clock() -> None:
    clock = Clock()
    resources = SessionResources(idle_timeout_s=60, clock=clock)
    resources.for_session("busy")["client"] = AsyncThing()
    resources.for_session("touched")
    clock.now += 50
    resources.touch("touched")
    clock.now += 50

    assert await resources.release_idle(busy=frozenset({"busy"})) == []
    clock.now += 10
    assert await resources.release_idle() == ["busy", "touched"]


async def test_a_value_that_fails_to_close_does_not_keep_the_others_open(caplog: pytest.LogCaptureFixture) -> None:
    resources = SessionResources(idle_timeout_s=1, clock=Clock())
    values = resources.for_session("s")
    values.update(first=SyncThing(fail=True), second=AsyncThing())

    await resources.release_all()

    assert values["second"].closed and len(resources) == 0
    assert "closing failed" in caplog.text
