"""Jinja filters: times, durations, money, token counts and JSON, formatted the same on every page."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Final

__all__ = ["FILTERS", "clock_time", "duration", "money", "number"]


def clock_time(epoch_s: float | None) -> str:
    """``2025-05-01 14:03:07`` (UTC), or an en dash for no time."""
    if epoch_s is None:
        return "–"
    return dt.datetime.fromtimestamp(epoch_s, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """``830 ms``, ``4.2 s``, ``3 min 20 s``; an en dash for none."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


def milliseconds(value: float | None) -> str:
    """A duration given in milliseconds."""
    return duration(None if value is None else value / 1000.0)


def money(value: float | None) -> str:
    """A cost in the price table's currency: ``0.0042``, ``12.35``; small amounts keep their digits."""
    if not value:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def number(value: int | float | None) -> str:
    """Thousands separated: ``12,345``."""
    return "–" if value is None else f"{value:,.0f}"


def pretty_json(value: Any) -> str:
    """Indented JSON for arguments and outputs."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def short(value: str | None, size: int = 12) -> str:
    """The first ``size`` characters of an id, with an ellipsis when cut."""
    if value is None:
        return "–"
    return value if len(value) <= size else value[:size] + "…"


_TONES: Final = {
    **dict.fromkeys(("completed", "ok", "delivered", "approved", "done", "allow", "resolved"), "ok"),
    **dict.fromkeys(("running",), "info"),
    **dict.fromkeys(("waiting", "pending", "queued", "warning", "open", "throttled"), "warn"),
    **dict.fromkeys(("failed", "error", "dead", "denied", "deny", "critical", "quarantined"), "bad"),
}


def tone(status: str | None) -> str:
    """The colour of a status pill: ``ok``, ``info``, ``warn``, ``bad`` or ``muted`` (cancelled, idle, ...)."""
    return _TONES.get(status or "", "muted")


FILTERS: Final[dict[str, Callable[..., str]]] = {
    "clock": clock_time,
    "duration": duration,
    "ms": milliseconds,
    "money": money,
    "number": number,
    "pretty_json": pretty_json,
    "short": short,
    "tone": tone,
}
