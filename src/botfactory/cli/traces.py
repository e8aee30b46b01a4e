"""Stored traces: ``botfactory traces list`` and ``botfactory traces show TRACE_ID``.

Reads the span store (``[tracing] store_spans``), the same spans the console draws as waterfalls.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import click
from rich.table import Column, Table
from rich.text import Text
from rich.tree import Tree

from botfactory.cli._output import console, print_json
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.errors import InvalidInputError, NotFoundError
from botfactory.store import SpanRecord, SpanStore, Store, TraceSummary

__all__: list[str] = []

# Attributes worth a glance in the tree; the rest are in --json.
_SHOWN: Final = (
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.tool.name",
    "botfactory.policy.decision",
    "botfactory.tool.ok",
    "botfactory.turn.status",
    "http.response.status_code",
)


@cli.group()
def traces() -> None:
    """Traces kept in botfactory's span store (see docs/tracing.md)."""


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@traces.command("list")
@click.option("--session", "session_id", default=None, help="Only this session's traces.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def traces_list(session_id: str | None, limit: int, as_json: bool) -> None:
    """List the newest stored traces."""

    async def read() -> list[TraceSummary]:
        async with await Store.open(load_settings().resolved_database_url) as store:
            return await SpanStore(store.engine).recent_traces(limit=limit, session_id=session_id)

    found = run_async(read())
    if as_json:
        print_json([summary.to_dict() for summary in found])
        return
    if not found:
        console.print("no stored traces match (is [tracing] store_spans on?)")
        return
    table = Table(Column("trace id", no_wrap=True, min_width=32), "started (UTC)", "root", "spans", "ms")
    for summary in found:
        duration = summary.to_dict()["duration_ms"]
        table.add_row(
            summary.trace_id, _when(summary.start_time), Text(summary.root), str(summary.spans), f"{duration:.1f}"
        )
    console.print(table)


@traces.command("show")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def traces_show(trace_id: str, as_json: bool) -> None:
    """Show one trace as a tree of spans with their durations."""
    wanted = trace_id.strip().lower()
    if len(wanted) != 32 or any(c not in "0123456789abcdef" for c in wanted):
        raise InvalidInputError(f"a trace id is 32 hex digits; not {trace_id!r} (see `botfactory traces list`)")

    async def read() -> list[SpanRecord]:
        async with await Store.open(load_settings().resolved_database_url) as store:
            return await SpanStore(store.engine).for_trace(wanted)

    found = run_async(read())
    if not found:
        raise NotFoundError(f"no stored spans for trace {wanted}; see `botfactory traces list`")
    if as_json:
        print_json([span.to_dict() for span in found])
        return
    console.print(_tree(wanted, found))


def _tree(trace_id: str, found: list[SpanRecord]) -> Tree:
    """Spans under their parents; a span whose parent is not stored hangs off the trace itself."""
    ids = {span.span_id for span in found}
    children: dict[str | None, list[SpanRecord]] = {}
    for span in found:
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    start = min(span.start_time for span in found)
    root = Tree(Text(f"trace {trace_id}"))

    def add(node: Tree, parent: str | None) -> None:
        for span in children.get(parent, []):
            branch = node.add(_label(span, start))
            add(branch, span.span_id)

    add(root, None)
    return root


def _label(span: SpanRecord, trace_start: float) -> Text:
    offset = (span.start_time - trace_start) * 1000.0
    label = Text(span.name, style="bold red" if span.status == "error" else "bold")
    label.append(f"  +{offset:.1f} ms, {span.duration_ms:.1f} ms", style="dim")
    shown: dict[str, Any] = {key: span.attributes[key] for key in _SHOWN if key in span.attributes}
    if shown:
        label.append("  " + " ".join(f"{key.split('.')[-1]}={value}" for key, value in shown.items()), style="cyan")
    if span.status_message:
        label.append(f"  {span.status_message}", style="red")
    return label
