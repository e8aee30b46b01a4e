"""A turn's waterfall: one horizontal bar per agent, model call and tool call, placed by start and duration.

Drawn from the turn's stored spans when tracing kept them, else from its durable steps (which every turn has),
with each tool call's policy decision from the audit log. Pure functions over records already read: a session
page reads each table once and groups the rows by turn here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from botfactory.store import AuditRecord, SpanRecord, StepRecord

__all__ = ["Bar", "Waterfall", "from_spans", "from_steps", "spans_by_turn"]

_MIN_WIDTH_PCT: Final = 0.4


@dataclass(frozen=True, kw_only=True)
class Bar:
    """One row of a waterfall.

    Attributes:
        kind: ``agent``, ``model``, ``tool``, ``turn``, ``wait`` or ``other`` (policy, approval, delivery, ...).
        depth: Nesting level, 0 for the outermost bar.
        offset_pct: Where the bar starts, in percent of the turn's duration.
        width_pct: How long it lasted, in percent (at least a sliver, so instant calls stay visible).
        detail: Tokens for a model call; the policy decision and outcome for a tool call.
        status: ``ok``, ``error``, ``denied`` or ``running``.
    """

    label: str
    kind: str
    depth: int
    offset_pct: float
    width_pct: float
    duration_ms: float
    detail: str
    status: str


@dataclass(frozen=True, kw_only=True)
class Waterfall:
    """The bars of one turn and where they came from."""

    source: Literal["spans", "steps"]
    total_ms: float
    bars: list[Bar]


@dataclass(frozen=True)
class _Item:
    label: str
    kind: str
    depth: int
    start: float
    end: float
    detail: str
    status: str


def _place(items: Sequence[_Item], source: Literal["spans", "steps"]) -> Waterfall:
    if not items:
        return Waterfall(source=source, total_ms=0.0, bars=[])
    origin = min(i.start for i in items)
    total = max(max(i.end for i in items) - origin, 1e-6)
    bars = []
    for item in items:
        offset = (item.start - origin) / total * 100.0
        width = max((item.end - item.start) / total * 100.0, _MIN_WIDTH_PCT)
        bars.append(
            Bar(
                label=item.label,
                kind=item.kind,
                depth=item.depth,
                offset_pct=round(min(offset, 100.0 - _MIN_WIDTH_PCT), 3),
                width_pct=round(min(width, 100.0 - min(offset, 100.0 - _MIN_WIDTH_PCT)), 3),
                duration_ms=max(0.0, item.end - item.start) * 1000.0,
                detail=item.detail,
                status=item.status,
            )
        )
    return Waterfall(source=source, total_ms=total * 1000.0, bars=bars)


def _decision(audit: AuditRecord | None) -> tuple[str, str]:
    """The detail text and status of a tool call from its audit row."""
    if audit is None:
        return "", "ok"
    parts = [audit.decision]
    if audit.approval:
        parts.append(f"approval {audit.approval}")
    if audit.outcome != "ok":
        parts.append(audit.outcome)
    if audit.outcome in ("denied", "rejected"):
        status = "denied"
    elif audit.outcome == "approval_pending":
        status = "running"
    else:
        status = "ok" if audit.outcome == "ok" else "error"
    return " · ".join(parts), status


def _tokens(usage: Any) -> str:
    if not isinstance(usage, dict):
        return ""
    return f"{int(usage.get('input_tokens') or 0):,} → {int(usage.get('output_tokens') or 0):,} tokens"


# From spans


def spans_by_turn(spans: Iterable[SpanRecord]) -> dict[str, list[SpanRecord]]:
    """The session's spans grouped by turn; a span without a turn id joins the turn of its trace."""
    spans = list(spans)
    trace_turn = {s.trace_id: s.turn_id for s in spans if s.turn_id is not None}
    grouped: dict[str, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        turn_id = span.turn_id or trace_turn.get(span.trace_id)
        if turn_id is not None:
            grouped[turn_id].append(span)
    return grouped


def _span_item(span: SpanRecord, depth: int, audits: dict[str, list[AuditRecord]]) -> _Item:
    attributes = span.attributes
    operation = attributes.get("gen_ai.operation.name")
    status = "error" if span.status == "error" else "ok"
    detail = ""
    if operation == "invoke_agent":
        kind = "agent"
        label = str(attributes.get("botfactory.agent.path") or attributes.get("gen_ai.agent.name") or span.name)
    elif operation == "chat":
        kind, label = "model", span.name
        detail = _tokens(
            {
                "input_tokens": attributes.get("gen_ai.usage.input_tokens"),
                "output_tokens": attributes.get("gen_ai.usage.output_tokens"),
            }
        )
    elif operation == "execute_tool":
        kind = "tool"
        label = str(attributes.get("gen_ai.tool.name") or span.name)
        queue = audits.get(label)
        detail, decided = _decision(queue.pop(0) if queue else None)
        status = "error" if status == "error" else decided
    elif span.name.startswith("turn "):
        kind, label = "turn", span.name
    elif span.name == "inbox wait":
        kind, label = "wait", span.name
    else:
        kind, label = "other", span.name
    return _Item(label, kind, depth, span.start_time, span.end_time, detail, status)


def from_spans(spans: Sequence[SpanRecord], audits: Sequence[AuditRecord] = ()) -> Waterfall:
    """The waterfall of one turn's spans, nested by parent; tool calls take their decision from ``audits``."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRecord]] = defaultdict(list)
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children[parent].append(span)
    by_tool: dict[str, list[AuditRecord]] = defaultdict(list)
    for audit in sorted(audits, key=lambda a: a.at):
        by_tool[audit.tool].append(audit)
    items: list[_Item] = []
    pending: list[tuple[SpanRecord, int]] = [(s, 0) for s in sorted(children[None], key=_start, reverse=True)]
    while pending:
        span, depth = pending.pop()
        items.append(_span_item(span, depth, by_tool))
        pending.extend((c, depth + 1) for c in sorted(children.get(span.span_id, []), key=_start, reverse=True))
    return _place(items, "spans")


def _start(span: SpanRecord) -> tuple[float, str]:
    return span.start_time, span.span_id


# From steps


def from_steps(steps: Sequence[StepRecord], audits: Sequence[AuditRecord] = ()) -> Waterfall:
    """The waterfall of one turn's recorded steps: a bar per agent spanning its calls, nested by agent path.

    A parent's tool call that ran a sub-agent is drawn as the sub-agent's bar rather than twice.
    """
    if not steps:
        return Waterfall(source="steps", total_ms=0.0, bars=[])
    audit_at = {a.position: a for a in audits if a.position is not None}
    paths = {s.agent_path for s in steps}
    spans: dict[str, list[float]] = {}
    delegations: set[tuple[str, int]] = set()
    for step in steps:
        end = step.finished_at if step.finished_at is not None else step.started_at
        child = f"{step.agent_path}/{step.name}"
        owners = [step.agent_path]
        if step.kind == "tool" and child in paths:
            owners.append(child)
            delegations.add((step.agent_path, step.position))
        for path in owners:
            # a step belongs to its agent and every agent above it
            parts = path.split("/")
            for size in range(1, len(parts) + 1):
                prefix = "/".join(parts[:size])
                interval = spans.setdefault(prefix, [step.started_at, end])
                interval[0], interval[1] = min(interval[0], step.started_at), max(interval[1], end)
    # A tree: each agent's children are its own calls and the sub-agents it ran, in the order they started.
    children: dict[str, list[tuple[float, int, _Item, str | None]]] = defaultdict(list)
    for path, (start, end) in spans.items():
        parent = path.rpartition("/")[0]
        item = _Item(path, "agent", path.count("/"), start, end, "", "ok")
        children[parent].append((start, 0, item, path))
    for step in steps:
        if (step.agent_path, step.position) in delegations:
            continue
        end = step.finished_at if step.finished_at is not None else step.started_at
        status = "running" if step.finished_at is None else ("ok" if step.status == "completed" else "error")
        if step.kind == "model":
            detail = _tokens((step.output or {}).get("usage") if isinstance(step.output, dict) else None)
            label = f"chat {step.name}"
        else:
            detail, decided = _decision(audit_at.get(step.position))
            status = status if status != "ok" else decided
            label = step.name
        item = _Item(label, step.kind, step.agent_path.count("/") + 1, step.started_at, end, detail, status)
        children[step.agent_path].append((step.started_at, step.position, item, None))
    items: list[_Item] = []
    pending = sorted(children[""], key=_order, reverse=True)
    while pending:
        _, _, node, agent = pending.pop()
        items.append(node)
        if agent is not None:
            pending.extend(sorted(children.get(agent, []), key=_order, reverse=True))
    return _place(items, "steps")


def _order(entry: tuple[float, int, _Item, str | None]) -> tuple[float, int]:
    return entry[0], entry[1]
