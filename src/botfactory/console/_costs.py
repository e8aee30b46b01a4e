"""The costs page: tokens and spend per day by bot, model alias and user, as server-drawn SVG bar charts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from botfactory.console._core import PREFIX, ConsoleState, Viewer
from botfactory.errors import InvalidInputError
from botfactory.runtime import utc_day
from botfactory.store import CostRow, CostScope, CostStore, day_before

__all__ = ["Chart", "build_chart", "cost_routes"]

PALETTE: Final = ("#4f7cff", "#17b890", "#f5a524", "#e5484d", "#9b6bff", "#2cb1d6", "#8a8f98")
_TOP: Final = 6
_WIDTH: Final = 720
_HEIGHT: Final = 220
_LEFT: Final = 56
_BOTTOM: Final = 24
_TOP_PAD: Final = 10
_MAX_DAYS: Final = 90


@dataclass(frozen=True, kw_only=True)
class Rect:
    """One stacked segment: a key's value on a day."""

    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True, kw_only=True)
class Chart:
    """A stacked bar chart of one scope over the days, ready for the template to draw."""

    scope: str
    metric: str
    """``cost`` when anything cost money, else ``tokens`` (local models cost nothing but still count)."""
    width: int
    height: int
    rects: list[Rect]
    legend: list[tuple[str, str]]
    y_ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    totals: list[tuple[str, int, float]]
    """``(key, tokens, cost)``, most expensive first."""

    @property
    def empty(self) -> bool:
        """Nothing was counted in the period."""
        return not self.totals


def _label(value: float, metric: str) -> str:
    if metric == "tokens":
        return f"{value / 1000:.0f}k" if value >= 10_000 else f"{value:,.0f}"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 0.1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def build_chart(scope: str, rows: Sequence[CostRow], days: Sequence[str]) -> Chart:
    """A stacked bar per day, one colour per key (the top six, the rest as ``other``)."""
    tokens: dict[str, int] = defaultdict(int)
    costs: dict[str, float] = defaultdict(float)
    for row in rows:
        tokens[row.key] += row.tokens
        costs[row.key] += row.cost
    metric = "cost" if any(c > 0 for c in costs.values()) else "tokens"
    totals = sorted(((k, tokens[k], costs[k]) for k in tokens), key=lambda t: (-t[2], -t[1], t[0]))
    ranked = [k for k, _, _ in totals]
    top = ranked if len(ranked) <= _TOP + 1 else ranked[:_TOP]  # never an 'other' of one key
    colors = {key: PALETTE[i] for i, key in enumerate(top)}
    per_day: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        key = row.key if row.key in colors else "other"
        per_day[row.day][key] += row.cost if metric == "cost" else row.tokens
    ceiling = _nice_max(max((sum(v.values()) for v in per_day.values()), default=0.0))
    plot_w, plot_h = _WIDTH - _LEFT - 8, _HEIGHT - _BOTTOM - _TOP_PAD
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 2.0)
    rects: list[Rect] = []
    x_labels: list[tuple[float, str]] = []
    every = max(1, len(days) // 10)
    for i, day in enumerate(days):
        x = _LEFT + i * slot + (slot - bar_w) / 2
        if i % every == 0 or i == len(days) - 1:
            x_labels.append((round(x + bar_w / 2, 1), day[5:]))
        base = float(_TOP_PAD + plot_h)
        for key in [*top, "other"]:
            value = per_day.get(day, {}).get(key, 0.0)
            if value <= 0:
                continue
            height = value / ceiling * plot_h
            base -= height
            rects.append(
                Rect(
                    x=round(x, 1),
                    y=round(base, 1),
                    width=round(bar_w, 1),
                    height=round(max(height, 0.5), 1),
                    color=colors.get(key, PALETTE[-1]),
                    title=f"{day} · {key}: {_label(value, metric)} {'tokens' if metric == 'tokens' else ''}".strip(),
                )
            )
    y_ticks = [(round(_TOP_PAD + plot_h - f * plot_h, 1), _label(ceiling * f, metric)) for f in (0, 0.25, 0.5, 0.75, 1)]
    legend = [(key, colors[key]) for key in top]
    if len(ranked) > len(top):
        legend.append(("other", PALETTE[-1]))
    return Chart(
        scope=scope,
        metric=metric,
        width=_WIDTH,
        height=_HEIGHT,
        rects=rects,
        legend=legend,
        y_ticks=y_ticks,
        x_labels=x_labels,
        totals=totals,
    )


def cost_routes(state: ConsoleState) -> list[BaseRoute]:
    """The costs page's routes."""
    costs = CostStore(state.platform.store.engine)

    async def page(request: Request, viewer: Viewer) -> Response:
        text = request.query_params.get("days", "14")
        if not text.isdigit() or not 1 <= int(text) <= _MAX_DAYS:
            raise InvalidInputError(f"days must be a whole number from 1 to {_MAX_DAYS}")
        count = int(text)
        today = utc_day(state.clock())
        days = [day_before(today, back) for back in reversed(range(count))]
        bot = viewer.principal.bot
        # A key for one bot sees that bot's spend only: models and users are shared between bots.
        scopes: tuple[CostScope, ...] = ("bot",) if bot is not None else ("bot", "model", "user")
        charts = [
            build_chart(scope, await costs.by_day(scope, since_day=days[0], key=bot if scope == "bot" else None), days)
            for scope in scopes
        ]
        return state.render("costs.html", viewer=viewer, page="costs", charts=charts, days=count, since=days[0])

    return [Route(f"{PREFIX}/costs", state.guard(page), methods=["GET"])]
