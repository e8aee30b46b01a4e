"""The support bot end to end on the real local models: routing, cited answers, seats granted, no inventions.

Slow on two cores (a turn takes 5-20 s); the cases come from the bot's golden set.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from botfactory.bots import SUPPORT_DOCS_DIR
from botfactory.config import Settings
from botfactory.memory import OnnxMiniLMEmbedder
from botfactory.server import Platform

pytestmark = [
    pytest.mark.model,
    pytest.mark.integration,
    pytest.mark.timeout(900),
    pytest.mark.asyncio(loop_scope="module"),
]

GOLDEN: dict[str, Any] = json.loads((SUPPORT_DOCS_DIR.parent / "golden.json").read_text())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    tmp_path_factory: pytest.TempPathFactory, models_cache: Path, embedder: OnnxMiniLMEmbedder
) -> AsyncIterator[Platform]:
    home = tmp_path_factory.mktemp("home")
    (home / "models").symlink_to(models_cache, target_is_directory=True)
    started = await Platform.start(Settings.load(home=home), embedder=embedder)
    try:
        yield started
    finally:
        await started.aclose()


@pytest.mark.parametrize("case", GOLDEN["knowledge"], ids=lambda c: c["source"].split("/")[-1])
async def test_knowledge_questions_are_answered_from_the_docs_with_the_source_cited(
    platform: Platform, case: dict[str, str]
) -> None:
    result = await platform.runtime.invoke("support", session_id=f"kb-{case['source']}", text=case["question"])
    assert result.status == "completed"
    assert "Sources:" in result.reply, result.reply
    assert case["source"] in result.reply.split("Sources:")[-1], result.reply
    steps = await platform.store.list_steps(result.turn_id)
    assert [s.name for s in steps if s.kind == "tool"] == ["knowledge", "search_docs"]


@pytest.mark.parametrize("case", GOLDEN["licenses"], ids=lambda c: c["seats"][0])
async def test_license_requests_assign_exactly_the_requested_seats(platform: Platform, case: dict[str, Any]) -> None:
    assert platform.github_demo is not None
    before = len(platform.github_demo.calls)
    result = await platform.runtime.invoke("support", session_id=f"gh-{case['seats'][0]}", text=case["question"])
    new_calls = platform.github_demo.calls[before:]
    assert [sorted(u.lower() for u in call.usernames) for call in new_calls] == [case["seats"]], result.reply
    assert all(seat in platform.github_demo.seats for seat in case["seats"])
    assert case["seats"][0] in result.reply.lower()


@pytest.mark.parametrize("case", GOLDEN["unanswerable"], ids=["cafeteria"])
async def test_a_question_the_docs_do_not_answer_gets_i_dont_know(platform: Platform, case: dict[str, str]) -> None:
    result = await platform.runtime.invoke("support", session_id="unknown", text=case["question"])
    assert re.search(r"(don't|do not) know|does not cover|doesn't cover", result.reply, re.IGNORECASE), result.reply
    assert "Sources:" not in result.reply
