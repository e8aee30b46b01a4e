"""Tool calling through schema-constrained JSON, for models whose native tool calling is unreliable.

Measured on the local Qwen2.5-Coder models (MODELS.md): 12/12 correct routing with a JSON schema of the form
``{"tool": <name>, "arguments": <that tool's schema>}`` or a final answer, against 0/12 through the server's
native ``tools`` field. The schema guarantees parseable output with valid tool names; the platform still
validates the arguments before any tool runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from botfactory.errors import ModelResponseError
from botfactory.messages import Message, ToolCall, ToolSpec

__all__ = ["describe_tools", "parse_choice", "plain_messages", "protocol_schema"]

FINAL_ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}


def protocol_schema(
    tools: Sequence[ToolSpec], output_schema: dict[str, Any] | None, *, require_tool: bool = False
) -> dict[str, Any]:
    """One schema admitting exactly one tool call (with that tool's arguments) or, unless a tool is required, a
    final answer."""
    final = output_schema or FINAL_ANSWER_SCHEMA
    branches: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"tool": {"const": spec.name}, "arguments": spec.parameters},
            "required": ["tool", "arguments"],
            "additionalProperties": False,
        }
        for spec in tools
    ]
    if not (require_tool and tools):
        branches.append(final)
    return branches[0] if len(branches) == 1 else {"anyOf": branches}


def describe_tools(
    tools: Sequence[ToolSpec], output_schema: dict[str, Any] | None, *, require_tool: bool = False
) -> str:
    """The protocol and tool list, appended to the system prompt (stable text: it stays in the prefix cache)."""
    final_keys = ", ".join(f'"{k}": ...' for k in (output_schema or FINAL_ANSWER_SCHEMA)["properties"])
    lines = ["", "## How to respond", "Always respond with one JSON object."]
    if tools:
        lines += [
            'To call a tool: {"tool": "<tool name>", "arguments": {...}}. You will then receive its result.',
            "You must call one of the tools." if require_tool else f"When you can answer the user: {{{final_keys}}}.",
            "",
            "## Tools",
        ]
        for spec in tools:
            params = ", ".join(
                f"{name}: {schema.get('type', 'any')}" for name, schema in spec.parameters.get("properties", {}).items()
            )
            lines.append(f"- {spec.name}({params}): {spec.description}")
    else:
        lines.append(f"Answer with: {{{final_keys}}}.")
    return "\n".join(lines)


def plain_messages(messages: Sequence[Message]) -> tuple[Message, ...]:
    """Rewrite tool-call turns as plain text, since the request carries no native ``tools`` field."""
    out: list[Message] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            call = message.tool_calls[0]
            out.append(Message(role="assistant", content=json.dumps({"tool": call.name, "arguments": call.arguments})))
        elif message.role == "tool":
            out.append(Message(role="user", content=f"Result of tool {message.name or ''}:\n{message.content}"))
        else:
            out.append(message)
    return tuple(out)


def parse_choice(content: str, *, call_id: str) -> tuple[Message, dict[str, Any] | None]:
    """Turn the model's JSON into an assistant message with one tool call, or a final answer.

    Returns:
        The assistant message and, for a final answer, the whole answer object.
    """
    try:
        data = json.loads(content)
    except json.JSONDecodeError as exc:
        raise ModelResponseError(f"the model returned invalid JSON despite the schema ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ModelResponseError("the model returned JSON that is not an object")
    if "tool" in data:
        arguments = data.get("arguments")
        call = ToolCall(id=call_id, name=str(data["tool"]), arguments=arguments if isinstance(arguments, dict) else {})
        return Message(role="assistant", tool_calls=(call,)), None
    if isinstance(data.get("answer"), str):
        return Message(role="assistant", content=data["answer"]), data
    raise ModelResponseError("the model's JSON is neither a tool call nor an answer")
