"""What a span may carry: prompts and completions only for bots that opt in, secrets never, PII masked.

Two places apply it. The engine records content attributes (``gen_ai.input.messages``, tool arguments, ...) only
when the turn's bot opts in, already passed through :func:`content_json` (sensitive fields and known secrets masked,
PII patterns masked, long text cut). Every span botfactory exports or stores then passes :func:`redact_span`
first: content attributes on a span that is not marked :data:`CONTENT_RECORDED` (another library's
instrumentation, say) are dropped, values of sensitive-looking keys are replaced by ``***``, and the PII patterns
below are masked in every other string value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.util.types import AttributeValue

from botfactory.messages import Message
from botfactory.observability.audit import REDACTED, redact

__all__ = [
    "CONTENT_ATTRIBUTES",
    "CONTENT_RECORDED",
    "content_json",
    "mask_pii",
    "messages_json",
    "redact_attributes",
    "redact_span",
]

CONTENT_RECORDED: Final = "botfactory.content.recorded"
"""Set (``True``) by the engine on spans whose content attributes the bot opted in to record."""

CONTENT_ATTRIBUTES: Final = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.prompt",
        "gen_ai.completion",
    }
)
"""Attributes holding prompts, completions or tool payloads (OpenTelemetry GenAI conventions, old and new)."""
_CONTENT_PREFIXES: Final = ("gen_ai.prompt.", "gen_ai.completion.")

# Identifiers the console looks spans up by: never rewritten (they hold no free text).
_IDENTIFIERS: Final = frozenset(
    {
        "gen_ai.conversation.id",
        "botfactory.turn.id",
        "botfactory.message.id",
        "botfactory.bot",
        "botfactory.agent.path",
        "gen_ai.agent.name",
        "gen_ai.tool.call.id",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "botfactory.approval.id",
    }
)
# Judged on the last dotted segment, so ``gen_ai.usage.input_tokens`` is not a secret but ``http.authorization`` is.
_SENSITIVE_KEY = re.compile(
    r"(passw|secret|^token$|_token$|api[_-]?key|authori[sz]ation|credential|cookie|private[_-]?key|signature)", re.I
)
_MAX_CONTENT_CHARS: Final = 8_000

_PII_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # Bearer tokens first: the token after the word may not match any vendor shape below.
    (re.compile(r"\b((?i:bearer|basic))\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), REDACTED),  # JWT
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{6,}"), REDACTED),  # Slack
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),  # GitHub
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),  # OpenAI, Anthropic (sk-ant-...)
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),  # AWS access key id
    (re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"), REDACTED),  # email
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), REDACTED),  # long hex keys (and digests)
)
# A run of base64 characters long enough to be a key; masked only when it mixes cases and digits (a key, not a path).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{32,}={0,2}")
# One pass that finds whether any pattern could apply: most values (names, ids, numbers) match none.
_ANY = re.compile("|".join([*(p.pattern for p, _ in _PII_PATTERNS), _BASE64_RUN.pattern]))


def _looks_random(token: str) -> bool:
    return (
        any(c.isdigit() for c in token)
        and any(c.islower() for c in token)
        and any(c.isupper() for c in token)
        and "//" not in token
    )


def mask_pii(text: str) -> str:
    """``text`` with emails, tokens (``xoxb-``, ``ghp_``, ``sk-``, ``Bearer ...``, JWTs), AWS keys and long hex or
    base64 keys replaced by ``***``."""
    if _ANY.search(text) is None:
        return text
    for pattern, replacement in _PII_PATTERNS:
        text = pattern.sub(replacement, text)
    return _BASE64_RUN.sub(lambda m: REDACTED if _looks_random(m.group(0)) else m.group(0), text)


def content_json(value: Any, secrets: Iterable[str] = ()) -> str:
    """A prompt, completion or tool payload as recordable JSON text: sensitive fields, ``secrets`` and PII masked,
    cut to 8,000 characters."""
    cleaned = redact(value, secrets)
    text = cleaned if isinstance(cleaned, str) else json.dumps(cleaned, default=str, ensure_ascii=False)
    text = mask_pii(text)
    return text if len(text) <= _MAX_CONTENT_CHARS else text[:_MAX_CONTENT_CHARS] + "…"


def messages_json(messages: Sequence[Message]) -> str:
    """Messages in the GenAI conventions' shape (``role`` and ``parts``), as :func:`content_json` text."""
    shaped: list[dict[str, Any]] = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        if message.content:
            parts.append({"type": "text", "content": message.content})
        for call in message.tool_calls:
            parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
        if message.role == "tool":
            parts = [{"type": "tool_call_response", "id": message.tool_call_id, "response": message.content}]
        shaped.append({"role": message.role, "parts": parts})
    return content_json(shaped)


def _is_content(key: str) -> bool:
    return key in CONTENT_ATTRIBUTES or key.startswith(_CONTENT_PREFIXES)


def _clean_value(key: str, value: AttributeValue) -> AttributeValue:
    if key in _IDENTIFIERS:
        return value
    if _SENSITIVE_KEY.search(key.rsplit(".", 1)[-1]):
        return REDACTED
    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, Sequence) and any(isinstance(v, str) for v in value):
        return [mask_pii(v) if isinstance(v, str) else v for v in value]
    return value


def redact_attributes(
    attributes: Mapping[str, AttributeValue] | None, *, content_allowed: bool
) -> dict[str, AttributeValue]:
    """Span or event attributes as they may be recorded (see the module docstring)."""
    if not attributes:
        return {}
    return {
        key: _clean_value(key, value) for key, value in attributes.items() if content_allowed or not _is_content(key)
    }


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of a finished span that is safe to export or store."""
    attributes = span.attributes or {}
    allowed = attributes.get(CONTENT_RECORDED) is True
    clean = redact_attributes(attributes, content_allowed=allowed)
    status = span.status
    if not span.events and not status.description and clean == attributes:
        return span  # nothing to hide: no copy
    events = [
        Event(
            event.name,
            redact_attributes(event.attributes, content_allowed=allowed),
            event.timestamp,
        )
        for event in span.events
    ]
    if status.description:
        status = type(status)(status.status_code, mask_pii(status.description))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=clean,
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
