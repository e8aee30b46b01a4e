"""Terminal output in one place: JSON for scripts, rich progress bars and tables for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

__all__ = ["bytes_progress", "console", "count_progress", "print_json", "startup_progress", "stderr"]

console = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def bytes_progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar in bytes; yields ``update(label, done, total)`` (one task per label)."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(f"{description} {label}", total=total)
            progress.update(tasks[label], completed=done, total=total)

        yield update


@contextmanager
def count_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar in items; yields ``update(done, total)``."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=stderr) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@contextmanager
def startup_progress() -> Iterator[tuple[Callable[[str, int, int], None], Callable[[int, int], None]]]:
    """One progress display for first-run work: ``(model_bytes(label, done, total), docs(done, total))``."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        tasks: dict[str, Any] = {}

        def model_bytes(label: str, done: int, total: int) -> None:
            key = f"model {label}"
            if key not in tasks:
                tasks[key] = progress.add_task(f"verifying model {label} (MB)", total=total // 1_000_000)
            progress.update(tasks[key], completed=done // 1_000_000, total=total // 1_000_000)

        def docs(done: int, total: int) -> None:
            if "docs" not in tasks:
                tasks["docs"] = progress.add_task("ingesting the shipped docs", total=total)
            progress.update(tasks["docs"], completed=done, total=total)

        yield model_bytes, docs
