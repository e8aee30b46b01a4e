"""@tool: JSON schema from type hints and Google-style docstrings, and argument validation."""

from __future__ import annotations

from typing import Literal

import pytest

from botfactory.agents import ToolContext, tool
from botfactory.errors import ToolArgumentsError


@tool
def search(query: str, limit: int = 5, kinds: list[str] | None = None, order: Literal["new", "old"] = "new") -> str:
    """Search the catalogue.

    Returns matching items, newest first.

    Args:
        query: Words to look for.
        limit: How many results,
            at most 50.
        kinds: Restrict to these kinds.

    Returns:
        A list.
    """
    return query


def test_schema_and_description_come_from_hints_and_docstring() -> None:
    assert search.name == "search"
    assert search.description == "Search the catalogue.\n\nReturns matching items, newest first."
    assert search.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "Words to look for."},
            "limit": {"type": "integer", "description": "How many results, at most 50.", "default": 5},
            "kinds": {
                "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
                "description": "Restrict to these kinds.",
            },
            "order": {"enum": ["new", "old"], "default": "new"},
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def test_validation_lists_every_problem() -> None:
    with pytest.raises(ToolArgumentsError) as caught:
        search.validate({"limit": "ten", "order": "random", "extra": 1})
    message = caught.value.message
    assert "'query' is a required property" in message
    assert "limit: 'ten' is not of type 'integer'" in message
    assert "order: 'random' is not one of ['new', 'old']" in message
    assert "'extra' was unexpected" in message


async def test_sync_tools_run_and_context_is_injected_not_described() -> None:
    @tool(name="whoami", description="Who is asking.")
    def who(ctx: ToolContext) -> str:
        return f"{ctx.user_id}@{ctx.session_id}"

    assert who.parameters["properties"] == {}
    context = ToolContext(session_id="s", turn_id="t", user_id="u", agent_path="a", idempotency_key="t:1")
    assert await who.call({}, context) == "u@s"


def test_tools_need_a_description_and_describable_types() -> None:
    with pytest.raises(ValueError, match="needs a docstring"):

        @tool
        def undocumented(x: int) -> int:
            return x

    with pytest.raises(TypeError, match="cannot describe type"):

        @tool
        def odd(x: complex) -> None:
            """Takes a complex number."""
