"""A turn's waterfall from its steps or its spans: bars nested by agent, placed by time, with tokens and decisions."""

from __future__ import annotations

from typing import Any

from tests.audit_rows import make_audit_row

from botfactory.console._waterfall import from_spans, from_steps, spans_by_turn
from botfactory.store import AuditRecord, SpanRecord, StepRecord


def step(position: int, path: str, kind: str, name: str, start: float, end: float, **output: Any) -> StepRecord:
    return StepRecord(
        turn_id="t1",
        position=position,
        agent_path=path,
        kind=kind,  # type: ignore[arg-type]
        name=name,
        input={},
        output=output,
        status="completed",
        started_at=start,
        finished_at=end,
    )


def audit(position: int, tool: str, *, decision: str = "allow", outcome: str = "ok", at: float = 0.0) -> AuditRecord:
    return make_audit_row(
        id=f"a{position}",
        at=at,
        agent_path="support/knowledge",
        tool=tool,
        decision=decision,
        outcome=outcome,
        duration_ms=5.0,
        session_id="s",
        position=position,
    )


SUPPORT_STEPS = [
    step(1, "support", "model", "large", 100.0, 101.0, usage={"input_tokens": 120, "output_tokens": 8}),
    step(2, "support", "tool", "knowledge", 101.0, 104.0),
    step(3, "support/knowledge", "tool", "search_docs", 101.1, 101.5),
    step(4, "support/knowledge", "model", "large", 101.5, 104.0, usage={"input_tokens": 900, "output_tokens": 60}),
]


def test_steps_make_an_agent_tree_with_the_delegation_drawn_once() -> None:
    waterfall = from_steps(SUPPORT_STEPS, [audit(3, "search_docs")])
    rows = [(b.label, b.kind, b.depth) for b in waterfall.bars]
    assert rows == [
        ("support", "agent", 0),
        ("chat large", "model", 1),
        ("support/knowledge", "agent", 1),
        ("search_docs", "tool", 2),
        ("chat large", "model", 2),
    ]
    assert waterfall.source == "steps" and waterfall.total_ms == 4000.0
    root, model, sub, tool, sub_model = waterfall.bars
    assert (root.offset_pct, root.width_pct) == (0.0, 100.0)
    assert (sub.offset_pct, sub.width_pct) == (25.0, 75.0)
    assert model.detail == "120 → 8 tokens" and sub_model.detail == "900 → 60 tokens"
    assert tool.detail == "allow" and tool.status == "ok" and round(tool.duration_ms) == 400


def test_a_denied_tool_call_is_marked_with_its_decision() -> None:
    steps = [step(1, "ops", "tool", "restart_service", 0.0, 0.1)]
    (bar,) = [
        b
        for b in from_steps(steps, [audit(1, "restart_service", decision="deny", outcome="denied")]).bars
        if b.kind == "tool"
    ]
    assert (bar.detail, bar.status) == ("deny · denied", "denied")


def test_no_steps_no_bars() -> None:
    assert from_steps([], []).bars == []


def span(span_id: str, parent: str | None, name: str, start: float, end: float, **attributes: Any) -> SpanRecord:
    return SpanRecord(
        trace_id="f" * 32,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind="internal",
        start_time=start,
        end_time=end,
        session_id="s",
        turn_id=attributes.pop("turn_id", "t1"),
        attributes=attributes,
    )


def test_spans_nest_by_parent_and_carry_tokens_and_decisions() -> None:
    spans = [
        span(
            "b" * 16,
            "a" * 16,
            "invoke_agent support",
            10.0,
            12.0,
            **{"gen_ai.operation.name": "invoke_agent", "botfactory.agent.path": "support"},
        ),
        span("a" * 16, None, "turn support", 9.9, 12.1),
        span(
            "c" * 16,
            "b" * 16,
            "chat large",
            10.0,
            11.0,
            **{"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3},
        ),
        span(
            "d" * 16,
            "b" * 16,
            "execute_tool search_docs",
            11.0,
            11.5,
            **{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_docs"},
        ),
        span("e" * 16, None, "POST /v1/bots/support/invoke", 9.0, 12.2, turn_id=None),
    ]
    grouped = spans_by_turn(spans)
    assert len(grouped["t1"]) == 5  # the channel's span has no turn id but shares the trace
    waterfall = from_spans(grouped["t1"], [audit(2, "search_docs", decision="ask", outcome="ok")])
    rows = [(b.label, b.kind, b.depth, b.detail) for b in waterfall.bars]
    assert rows == [
        ("POST /v1/bots/support/invoke", "other", 0, ""),
        ("turn support", "turn", 0, ""),
        ("support", "agent", 1, ""),
        ("chat large", "model", 2, "7 → 3 tokens"),
        ("search_docs", "tool", 2, "ask"),
    ]
    assert waterfall.source == "spans" and round(waterfall.total_ms) == 3200
