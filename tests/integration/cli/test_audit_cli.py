"""``botfactory audit list`` in-process against a temporary BOTFACTORY_HOME holding audited calls."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from botfactory.cli import main
from botfactory.cli.audit import parse_since
from botfactory.config import Settings
from botfactory.errors import InvalidInputError
from botfactory.store import AuditRecord, AuditStore, Store, new_id

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def row(tool: str, principal: str, decision: str, outcome: str, *, at: float) -> AuditRecord:
    return AuditRecord(
        id=new_id(),
        at=at,
        principal=principal,
        bot="support",
        agent_path="support/github",
        tool=tool,
        arguments={"org": "acme"},
        decision=decision,
        reasons=("platform:grant",) if decision == "allow" else ("support:acme-only",),
        approval=None,
        outcome=outcome,
        error=None if outcome == "ok" else "denied by policy support:acme-only",
        duration_ms=1.5,
        session_id="s1",
        turn_id="t1",
        position=2,
        trace_id=None,
    )


def seed(*records: AuditRecord) -> None:
    async def write() -> None:
        async with await Store.open(Settings.load().resolved_database_url) as store:
            await AuditStore(store.engine).insert(records)

    asyncio.run(write())


def test_list_filters_by_tool_and_user_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    seed(
        row("assign_seat", "slack:T1:U1", "allow", "ok", at=now - 30),
        row("assign_seat", "slack:T1:U2", "deny", "denied", at=now - 20),
        row("search_docs", "slack:T1:U1", "allow", "ok", at=now - 10),
    )
    assert main(["audit", "list", "--tool", "assign_seat", "--user", "slack:T1:U2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["tool"], r["principal"], r["decision"], r["reasons"]) for r in rows] == [
        ("assign_seat", "slack:T1:U2", "deny", ["support:acme-only"])
    ]
    assert main(["audit", "list", "--user", "slack:T1:U1", "--json"]) == 0
    assert [r["tool"] for r in json.loads(capsys.readouterr().out)] == ["search_docs", "assign_seat"]
    assert main(["audit", "list", "--since", "15s", "--json"]) == 0
    assert [r["tool"] for r in json.loads(capsys.readouterr().out)] == ["search_docs"]


def test_list_as_a_table_and_when_empty(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "list"]) == 0
    assert "no audited tool calls match" in capsys.readouterr().out
    seed(row("assign_seat", "slack:T1:U2", "deny", "denied", at=time.time()))
    assert main(["audit", "list", "--decision", "deny"]) == 0
    out = capsys.readouterr().out
    assert "assign_seat" in out and "denied by policy support:acme-only" in out


def test_bad_options_exit_non_zero_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "list", "--since", "yesterday"]) != 0
    assert "--since must be a duration" in capsys.readouterr().err
    assert main(["audit", "list", "--limit", "0"]) != 0


def test_parse_since() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("1700000000", now=0.0) == 1_700_000_000.0
    with pytest.raises(InvalidInputError):
        parse_since("-5m", now=0.0)
