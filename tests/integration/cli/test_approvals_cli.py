"""``botfactory approvals list|approve|deny`` in-process against a temporary BOTFACTORY_HOME."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from botfactory.cli import main
from botfactory.config import Settings
from botfactory.store import BatchWriter, NewApproval, RuntimeStore, Store

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOTFACTORY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def request(tool: str, key: str) -> str:
    async def create() -> str:
        url = Settings.load().resolved_database_url
        async with await Store.open(url):
            writer = BatchWriter(url)
            try:
                record = await RuntimeStore(writer).approvals.request(
                    NewApproval(
                        call_key=key,
                        session_id="s1",
                        turn_id="t1",
                        bot="ops",
                        agent_path="ops",
                        tool=tool,
                        arguments={"service": "checkout"},
                        requester="slack:T1:U1",
                        expires_at=time.time() + 600,
                    )
                )
            finally:
                await writer.close()
        return record.id

    return asyncio.run(create())


def test_list_approve_and_deny(capsys: pytest.CaptureFixture[str]) -> None:
    first = request("restart_service", "t1:1")
    second = request("drop_cache", "t1:2")
    assert main(["approvals", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(a["id"], a["tool"], a["status"]) for a in listed] == [
        (second, "drop_cache", "pending"),
        (first, "restart_service", "pending"),
    ]
    assert main(["approvals", "approve", first, "--reason", "looks fine"]) == 0
    assert "approved restart_service" in capsys.readouterr().out
    assert main(["approvals", "deny", second]) == 0
    capsys.readouterr()
    assert main(["approvals", "list", "--status", "all", "--json"]) == 0
    decided = {a["id"]: a for a in json.loads(capsys.readouterr().out)}
    assert decided[first]["status"] == "approved" and decided[first]["reason"] == "looks fine"
    assert decided[first]["decided_by"].startswith("cli:")
    assert decided[second]["status"] == "denied"
    assert main(["approvals", "list"]) == 0
    assert "no pending approval requests" in capsys.readouterr().out


def test_deciding_twice_or_an_unknown_request_fails_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    approval = request("restart_service", "t1:3")
    assert main(["approvals", "approve", approval]) == 0
    capsys.readouterr()
    assert main(["approvals", "deny", approval]) != 0
    assert "is already approved by cli:" in capsys.readouterr().err
    assert main(["approvals", "approve", "0190a0a0-0000-7000-8000-000000000000"]) != 0
    assert "no approval request" in capsys.readouterr().err
