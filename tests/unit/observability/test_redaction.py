"""Redaction of spans: content only when the bot opted in, secrets never, PII masked in whatever is recorded."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from botfactory.messages import Message, ToolCall
from botfactory.observability import CONTENT_RECORDED, content_json, mask_pii, messages_json, redact_span

CONTEXT = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=False, trace_flags=TraceFlags(1))


def _span(attributes: dict[str, object], **extra: object) -> ReadableSpan:
    return ReadableSpan(
        name="chat large",
        context=CONTEXT,
        attributes=attributes,  # type: ignore[arg-type]
        start_time=1,
        end_time=2,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "secret",
    [
        "alice@example.com",
        "xoxb-123456789012-abcdefABCDEF",
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuv",
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "sk-ant-api03-abcdefghijklmnopqrstuvwx",
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ],
)
def test_tokens_keys_and_emails_are_masked_in_text(secret: str) -> None:
    masked = mask_pii(f"please use {secret} for this")
    assert secret not in masked
    assert masked.startswith("please use ") and masked.endswith(" for this")
    assert "***" in masked


def test_bearer_credentials_keep_the_scheme_but_lose_the_value() -> None:
    assert mask_pii("Authorization: Bearer abc.def-ghi_123") == "Authorization: Bearer ***"


@pytest.mark.parametrize(
    "text",
    [
        "/v1/bots/support/sessions/s-trace/messages",
        "0192a7e4-7c1b-7a3e-9f00-1234567890ab",
        "How do I rotate the vault API keys on the staging cluster?",
        "T1:C9:1700000400.000100",
    ],
)
def test_ordinary_text_paths_and_ids_are_left_alone(text: str) -> None:
    assert mask_pii(text) == text


def test_content_is_dropped_from_spans_that_did_not_opt_in() -> None:
    span = _span(
        {
            "gen_ai.input.messages": '[{"role": "user", "parts": []}]',
            "gen_ai.output.messages": "the answer",
            "gen_ai.system_instructions": "you are a bot",
            "gen_ai.tool.call.arguments": "{}",
            "gen_ai.tool.call.result": "ok",
            "gen_ai.prompt.0.content": "legacy instrumentation",
            "gen_ai.request.model": "large",
            "gen_ai.usage.input_tokens": 12,
        }
    )
    clean = redact_span(span).attributes or {}
    assert dict(clean) == {"gen_ai.request.model": "large", "gen_ai.usage.input_tokens": 12}


def test_content_survives_on_opted_in_spans_with_pii_masked() -> None:
    span = _span({CONTENT_RECORDED: True, "gen_ai.input.messages": "mail bob@corp.example about it"})
    clean = redact_span(span).attributes or {}
    assert clean["gen_ai.input.messages"] == "mail *** about it"


def test_secret_keys_never_leave_and_ids_stay_searchable() -> None:
    span = _span(
        {
            "http.request.header.authorization": "Bearer abc",
            "db.password": "hunter2",
            "botfactory.user": "alice@example.com",
            "gen_ai.conversation.id": "T1:C9:1700000400.000100",
            "botfactory.turn.id": "0192a7e4-7c1b-7a3e-9f00-1234567890ab",
            "gen_ai.usage.output_tokens": 5,
            "botfactory.policy.reasons": ["policy0", "mailed carol@example.org"],
        },
        events=[Event("exception", {"exception.message": "token xoxb-999999999-zzzzzz rejected"}, 3)],
        status=Status(StatusCode.ERROR, "cannot reach dave@example.net"),
    )
    clean = redact_span(span)
    attributes = clean.attributes or {}
    assert attributes["http.request.header.authorization"] == "***"
    assert attributes["db.password"] == "***"
    assert attributes["botfactory.user"] == "***"
    assert attributes["gen_ai.conversation.id"] == "T1:C9:1700000400.000100"
    assert attributes["botfactory.turn.id"] == "0192a7e4-7c1b-7a3e-9f00-1234567890ab"
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert list(attributes["botfactory.policy.reasons"]) == ["policy0", "mailed ***"]  # type: ignore[arg-type]
    assert (clean.events[0].attributes or {})["exception.message"] == "token *** rejected"
    assert clean.status.description == "cannot reach ***"
    assert (clean.context, clean.name, clean.start_time, clean.end_time) == (CONTEXT, "chat large", 1, 2)


def test_content_json_masks_sensitive_fields_known_secrets_and_pii_and_cuts_long_text() -> None:
    recorded = json.loads(
        content_json({"query": "seat for eve@example.com", "api_key": "k-1", "note": "uses s3cr3t-value"}, ["s3cr3t"])
    )
    assert recorded == {"query": "seat for ***", "api_key": "***", "note": "uses ***-value"}
    assert len(content_json("x" * 20_000)) <= 8_001


def test_messages_are_recorded_in_the_gen_ai_shape() -> None:
    messages = [
        Message(role="user", content="hi, I am frank@example.com"),
        Message(role="assistant", tool_calls=(ToolCall(id="c1", name="github", arguments={"request": "seat"}),)),
        Message(role="tool", content="done", tool_call_id="c1", name="github"),
    ]
    assert json.loads(messages_json(messages)) == [
        {"role": "user", "parts": [{"type": "text", "content": "hi, I am ***"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c1", "name": "github", "arguments": {"request": "seat"}}],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "done"}]},
    ]
