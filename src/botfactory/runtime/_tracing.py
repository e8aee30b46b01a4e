"""The runtime's spans: the time a message waited in the inbox, and the turn, in the channel's trace."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from botfactory.observability import GEN_AI_CONVERSATION_ID, context_from, record_span, tracer
from botfactory.store import Claim

__all__ = ["turn_span"]

_TRACER = tracer("runtime")


@contextlib.contextmanager
def turn_span(claim: Claim, *, now: float) -> Iterator[Span]:
    """The span of one attempt of a turn, continuing the trace its first message came with.

    A fresh turn also gets an ``inbox wait`` span from when its first message was queued until now; a resumed
    turn does not (its wait was recorded by the attempt that crashed).
    """
    first = claim.inputs[0] if claim.inputs else None
    parent = context_from(first.trace_context if first is not None else None)
    attributes = {
        GEN_AI_CONVERSATION_ID: claim.session_id,
        "botfactory.bot": claim.bot,
        "botfactory.turn.id": claim.turn.id,
    }
    if claim.user_id:
        attributes["botfactory.user"] = claim.user_id
    if first is not None and not claim.resumed:
        record_span(
            "runtime",
            "inbox wait",
            start_s=first.enqueued_at,
            end_s=now,
            context=parent,
            attributes={**attributes, "botfactory.message.id": first.message_id},
        )
    # Attached, not only the span's parent: the message's baggage stays current for the turn's outbound calls.
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with _TRACER.start_as_current_span(
            f"turn {claim.bot}",
            context=parent,
            attributes={
                **attributes,
                "botfactory.turn.attempt": claim.turn.attempts,
                "botfactory.turn.resumed": claim.resumed,
                "botfactory.turn.messages": len(claim.inputs),
            },
        ) as span:
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)
