"""Semantic tool search: an agent with more tools than fit is shown ``find_tools`` and the tools it found, the same
lists again when its turn is resumed, and everything as before below the threshold."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from botfactory.agents import Agent, Engine, Step, Tool, ToolSearch, TurnInput
from botfactory.messages import ToolSpec
from botfactory.testing import ScriptedModel, call, scripted_inference

_DIMENSIONS = 256


class BagOfWords:
    """A deterministic stand-in embedder: texts sharing words get close vectors."""

    dimensions = _DIMENSIONS

    def __init__(self) -> None:
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.embedded.extend(texts)
        out = np.zeros((len(texts), _DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z]+", text.lower()):
                out[row, zlib.crc32(word.encode()) % _DIMENSIONS] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        normalized: npt.NDArray[np.float32] = (out / np.maximum(norms, 1e-12)).astype(np.float32)
        return normalized


ran: list[tuple[str, str]] = []
"""(tool, argument) of every tool run."""

SUBJECTS = [
    "invoice", "payroll", "calendar", "printer", "vacation", "laptop", "badge", "parking", "wiki", "expense",
    "ticket", "vpn", "mailbox", "backup", "database", "firewall", "certificate", "dns", "password", "meeting",
    "travel", "contract", "onboarding", "offboarding", "survey", "budget", "shipment", "inventory",
]  # fmt: skip


def _make_tool(name: str, description: str) -> Tool:
    def run(item: str) -> str:
        ran.append((name, item))
        return f"{name} done for {item}"

    return Tool(run, name=name, description=description)


def many_tools() -> list[Tool]:
    """30 tools: one per subject, plus the two GitHub ones the tests look for."""
    tools = [_make_tool(f"manage_{s}", f"Create, update or look up a {s} record.") for s in SUBJECTS]
    tools.append(_make_tool("assign_copilot_seat", "Give a user a GitHub Copilot seat (license)."))
    tools.append(_make_tool("remove_copilot_seat", "Take a GitHub Copilot seat away from a user."))
    return tools


@pytest.fixture(autouse=True)
def _reset() -> None:
    ran.clear()


class Recorder:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    async def record(self, step: Step) -> None:
        self.steps.append(step)


def turn() -> TurnInput:
    return TurnInput(session_id="s1", turn_id="t1", text="give mona a copilot seat", user_id="u1")


def listed(model: ScriptedModel) -> list[list[str]]:
    """The tool names each request showed the model."""
    return [[s.name for s in request.tools] for request in model.requests]


# Positions: 1 model -> find_tools   2 tool: find_tools   3 model -> assign_copilot_seat
#            4 tool: assign_copilot_seat   5 model -> answers
ANSWERS: dict[int, Any] = {
    1: call("find_tools", query="GitHub Copilot seat for a user"),
    3: call("assign_copilot_seat", item="mona"),
    5: "Mona has a Copilot seat now.",
}


def script(skip: Collection[int] = ()) -> ScriptedModel:
    return ScriptedModel([a for p, a in sorted(ANSWERS.items()) if p not in skip])


def engine(model: ScriptedModel, embedder: BagOfWords | None = None, *, threshold: int = 24) -> Engine:
    return Engine(
        scripted_inference({"large": model}),
        tool_search=ToolSearch(embedder or BagOfWords()),
        max_visible_tools=threshold,
    )


def agent(tools: Sequence[Tool] | None = None) -> Agent:
    return Agent(name="helper", instructions="Help.", tools=many_tools() if tools is None else tools)


async def test_above_the_threshold_the_model_sees_find_tools_then_the_tools_it_found() -> None:
    model = script()
    recorder = Recorder()

    result = await engine(model).run_turn(agent(), turn(), recorder=recorder)

    assert result.reply == "Mona has a Copilot seat now."
    assert ran == [("assign_copilot_seat", "mona")]
    requests = listed(model)
    assert requests[0] == ["find_tools"]
    found = requests[1][1:]
    assert requests[1][0] == "find_tools"
    assert len(found) == 8
    assert found[:2] == ["assign_copilot_seat", "remove_copilot_seat"]
    assert requests[2] == requests[1]  # the tool it called was already listed
    # find_tools is recorded as a tool step like any other, its output naming what it found.
    step = next(s for s in recorder.steps if s.position == 2)
    assert (step.kind, step.name, step.ok) == ("tool", "find_tools", True)
    output = json.loads(step.output["output"])
    assert [t["name"] for t in output["tools"]] == found
    assert output["tools"][0]["description"] == "Give a user a GitHub Copilot seat (license)."


@pytest.mark.parametrize("recorded", range(6))
async def test_a_resumed_turn_shows_the_model_the_same_tool_lists(recorded: int) -> None:
    original = script()
    first = Recorder()
    reply = (await engine(original).run_turn(agent(), turn(), recorder=first)).reply
    ran.clear()
    replay = first.steps[:recorded]
    replayed = {s.position for s in replay}
    resumed = script(replayed)
    # A replayed find_tools is not searched again: what it found is read from its recorded output.
    fresh = BagOfWords()

    result = await engine(resumed, fresh).run_turn(agent(), turn(), recorder=Recorder(), replay=replay)

    assert result.reply == reply
    assert resumed.remaining == 0
    assert listed(resumed) == listed(original)[len(listed(original)) - len(resumed.requests) :]
    assert (fresh.embedded == []) == (2 in replayed)
    assert ran == ([] if 4 in replayed else [("assign_copilot_seat", "mona")])


async def test_at_or_below_the_threshold_the_model_sees_every_tool_and_no_find_tools() -> None:
    tools = many_tools()
    model = ScriptedModel([call("assign_copilot_seat", item="mona"), "done"])
    embedder = BagOfWords()

    await engine(model, embedder, threshold=len(tools)).run_turn(agent(tools), turn())

    assert listed(model) == [[t.name for t in tools]] * 2
    assert embedder.embedded == []
    assert ran == [("assign_copilot_seat", "mona")]


async def test_without_a_tool_search_every_tool_is_shown_however_many() -> None:
    tools = many_tools()
    model = ScriptedModel(["hello"])

    await Engine(scripted_inference({"large": model}), max_visible_tools=2).run_turn(agent(tools), turn())

    assert listed(model) == [[t.name for t in tools]]


async def test_a_granted_tool_not_found_yet_can_still_be_called_and_is_listed_from_then_on() -> None:
    model = ScriptedModel([call("manage_vpn", item="mona"), "done"])

    await engine(model).run_turn(agent(), turn())

    assert ran == [("manage_vpn", "mona")]
    assert listed(model) == [["find_tools"], ["find_tools", "manage_vpn"]]


async def test_find_tools_without_a_query_is_an_error_the_model_sees_and_activates_nothing() -> None:
    model = ScriptedModel([call("find_tools", question="copilot"), "sorry"])
    recorder = Recorder()

    await engine(model).run_turn(agent(), turn(), recorder=recorder)

    step = recorder.steps[1]
    assert (step.name, step.ok) == ("find_tools", False)
    assert "invalid arguments for tool 'find_tools'" in step.output["output"]
    assert listed(model) == [["find_tools"], ["find_tools"]]


async def test_tool_search_embeds_each_tool_once_and_then_only_queries() -> None:
    embedder = BagOfWords()
    search = ToolSearch(embedder)
    specs = [t.spec for t in many_tools()]

    first = await search.search(specs, "remove a copilot seat", k=3)
    embedded = len(embedder.embedded)
    second = await search.search(specs, "database backup", k=2)

    assert embedded == 1 + len(specs)
    assert embedder.embedded[embedded:] == ["database backup"]
    assert first[0].name == "remove_copilot_seat"
    assert {s.name for s in second} == {"manage_database", "manage_backup"}
    changed = [*specs[:-1], ToolSpec(name=specs[-1].name, description="Print a document.", parameters={})]
    await search.search(changed, "print", k=1)
    assert embedder.embedded[-2:] == ["print", f"{specs[-1].name}: Print a document."]
    assert await search.search([], "anything") == []
