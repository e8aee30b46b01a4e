"""The long-running commands move start-up's objects out of the garbage collector's scans once started."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from botfactory.cli import serve as serve_command
from botfactory.cli._signals import Stopper
from botfactory.config import Settings
from botfactory.server import freeze_startup_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_freezing_moves_the_live_objects_to_the_permanent_generation_and_leaves_garbage_out() -> None:
    class Cycle:
        partner: Any = None

    garbage = Cycle()
    garbage.partner = Cycle()
    garbage.partner.partner = garbage
    garbage_ref = weakref.ref(garbage)
    survivor = Cycle()
    del garbage
    assert any(o is survivor for o in gc.get_objects())

    freeze_startup_heap()

    assert garbage_ref() is None  # collected first, not frozen
    assert gc.get_freeze_count() > 1000
    assert not any(o is survivor for o in gc.get_objects())  # out of every generation the collector scans


@pytest.mark.usefixtures("unfrozen")
async def test_the_commands_freeze_once_the_platform_has_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    calls: list[str] = []
    started = object()

    async def start(*args: Any, **kwargs: Any) -> object:
        calls.append("start")
        return started

    monkeypatch.setattr(serve_command.Platform, "start", start)
    monkeypatch.setattr(serve_command, "freeze_startup_heap", lambda: calls.append("freeze"))

    platform = await serve_command._start(Stopper(), Settings.load(home=tmp_path), "serve")

    assert platform is started
    assert calls == ["start", "freeze"]
