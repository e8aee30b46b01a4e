"""``botfactory traces list|show`` in-process against a temporary BOTFACTORY_HOME holding stored spans."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from botfactory.cli import main
from botfactory.config import Settings
from botfactory.store import SpanRecord, SpanStore, Store

pytestmark = pytest.mark.integration

TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER = "1bf7651916cd43dd8448eb211c80319d"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def span(
    trace_id: str, span_id: str, parent: str | None, name: str, start: float, end: float, **attrs: object
) -> SpanRecord:
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind="internal",
        start_time=start,
        end_time=end,
        session_id="s1" if trace_id == TRACE else "s2",
        turn_id="t1",
        bot="support",
        attributes=dict(attrs),
    )


def seed(*records: SpanRecord) -> None:
    async def write() -> None:
        async with await Store.open(Settings.load().resolved_database_url) as store:
            await SpanStore(store.engine).insert(records)

    asyncio.run(write())


def test_list_and_show_a_stored_trace(capsys: pytest.CaptureFixture[str]) -> None:
    seed(
        span(TRACE, "a" * 16, None, "POST /slack/events", 100.0, 100.004),
        span(TRACE, "b" * 16, "a" * 16, "turn support", 100.01, 100.5),
        span(TRACE, "c" * 16, "b" * 16, "chat small", 100.02, 100.3, **{"gen_ai.usage.input_tokens": 42}),
        span(OTHER, "d" * 16, "f" * 16, "turn support", 200.0, 200.1),  # its parent lives in the caller's trace
    )
    assert main(["traces", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [t["trace_id"] for t in listed] == [OTHER, TRACE]  # newest first
    assert listed[1]["root"] == "POST /slack/events"
    assert listed[1]["spans"] == 3
    assert listed[1]["duration_ms"] == pytest.approx(500.0)
    assert listed[0]["root"] == "turn support"

    assert main(["traces", "list", "--session", "s1", "--json"]) == 0
    assert [t["trace_id"] for t in json.loads(capsys.readouterr().out)] == [TRACE]

    assert main(["traces", "show", TRACE]) == 0
    tree = capsys.readouterr().out
    lines = [line for line in tree.splitlines() if line.strip()]
    assert lines[0].strip() == f"trace {TRACE}"
    chat_line = next(line for line in lines if "chat small" in line)
    turn_line = next(line for line in lines if "turn support" in line)
    assert "input_tokens=42" in chat_line
    assert chat_line.index("chat small") > turn_line.index("turn support")  # nested under the turn

    assert main(["traces", "show", TRACE.upper(), "--json"]) == 0
    assert {s["name"] for s in json.loads(capsys.readouterr().out)} == {
        "POST /slack/events",
        "turn support",
        "chat small",
    }


def test_show_explains_bad_and_unknown_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "show", "not-a-trace"]) != 0
    assert "32 hex digits" in capsys.readouterr().err
    assert main(["traces", "show", OTHER]) == 3
    assert "traces list" in capsys.readouterr().err


def test_list_says_when_nothing_is_stored(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["traces", "list"]) == 0
    assert "no stored traces" in capsys.readouterr().out
