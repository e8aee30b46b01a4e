"""``GET /v1/costs``: tokens and spend per bot, user or model alias, per UTC day and in total (see docs/costs.md).

The same report backs ``botfactory costs`` and the console's charts. A key limited to one bot sees only that bot
(``by=bot``); spend by user or model covers every bot, so such a key is refused for those (403).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from botfactory.channels._access import check_bot_allowed, key_bot
from botfactory.errors import ForbiddenError, InvalidFieldError
from botfactory.store import COST_SCOPES, CostRow, CostScope, CostStore, day_before

__all__ = ["CostReport", "cost_report", "costs_routes", "since_day", "utc_today"]

_SINCE: Final = re.compile(r"^(?:(today)|([0-9]{1,5})d|([0-9]{4}-[0-9]{2}-[0-9]{2}))$")
MAX_DAYS: Final = 3660
_MAX_KEY_CHARS: Final = 256


def since_day(value: str, *, today: str) -> str:
    """The first UTC day (``YYYY-MM-DD``) a ``since`` value covers: ``today``, ``7d`` (the last 7 days, today
    included), ``30d``, or a date ``YYYY-MM-DD``.

    Raises:
        InvalidFieldError: none of those forms, 0 days, more than 3660 days, or not a real date.
    """
    match = _SINCE.match(value.strip().lower())
    how = "use today, a number of days such as 7d or 30d, or a date YYYY-MM-DD"
    if match is None:
        raise InvalidFieldError(f"since must be a period: {how}; not {value[:40]!r}", param="since")
    if match.group(1):
        return today
    if match.group(2):
        days = int(match.group(2))
        if not 1 <= days <= MAX_DAYS:
            raise InvalidFieldError(f"since must be 1d to {MAX_DAYS}d, not {value[:40]!r}", param="since")
        return day_before(today, days - 1)
    try:
        return dt.date.fromisoformat(match.group(3)).isoformat()
    except ValueError:
        raise InvalidFieldError(f"since is not a real date: {value[:40]!r}; {how}", param="since") from None


def utc_today(clock: Callable[[], float] = time.time) -> str:
    """Today's UTC date, as the usage counters name days."""
    return dt.datetime.fromtimestamp(clock(), tz=dt.UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, kw_only=True)
class CostReport:
    """Spend of one scope over a period: rows per day and key, totals per key (most expensive first), the sum."""

    by: CostScope
    since: str
    until: str
    rows: list[CostRow]
    totals: list[CostRow]

    @property
    def tokens(self) -> int:
        """Every key's tokens over the period."""
        return sum(row.tokens for row in self.totals)

    @property
    def cost(self) -> float:
        """Every key's spend over the period."""
        return sum(row.cost for row in self.totals)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``GET /v1/costs`` and ``botfactory costs --json``."""
        return {
            "by": self.by,
            "since": self.since,
            "until": self.until,
            "rows": [row.to_dict() for row in self.rows],
            "totals": [{"key": row.key, "tokens": row.tokens, "cost": row.cost} for row in self.totals],
            "total": {"tokens": self.tokens, "cost": self.cost},
        }


async def cost_report(costs: CostStore, *, by: CostScope, since: str, today: str, key: str | None = None) -> CostReport:
    """Read the counters of ``by`` from the day ``since`` names up to ``today``.

    Raises:
        InvalidFieldError: ``since`` is not a period :func:`since_day` understands.
    """
    first = since_day(since, today=today)
    rows = await costs.by_day(by, since_day=first, key=key)
    summed: dict[str, list[float]] = {}
    for row in rows:
        total = summed.setdefault(row.key, [0, 0.0])
        total[0] += row.tokens
        total[1] += row.cost
    ordered = sorted(summed.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
    totals = [CostRow(day=first, key=k, tokens=int(t), cost=float(c)) for k, (t, c) in ordered]
    return CostReport(by=by, since=first, until=today, rows=rows, totals=totals)


def costs_routes(costs: CostStore, *, clock: Callable[[], float] = time.time) -> list[BaseRoute]:
    """The costs route, reading ``costs``; ``clock`` (epoch seconds) decides which day is today."""

    async def get_costs(request: Request) -> Response:
        params = request.query_params
        by = params.get("by", "bot")
        if by not in COST_SCOPES:
            raise InvalidFieldError(f"by must be one of {', '.join(COST_SCOPES)}, not {by[:40]!r}", param="by")
        key = params.get("key")
        if key is not None and not 1 <= len(key) <= _MAX_KEY_CHARS:
            raise InvalidFieldError(f"key must be 1 to {_MAX_KEY_CHARS} characters", param="key")
        limited_to = key_bot(request)
        if limited_to is not None:
            if by != "bot":
                raise ForbiddenError(
                    f"this key is limited to bot {limited_to!r}, and spend by {by} covers every bot; "
                    "ask for by=bot, or use a key created without --bot"
                )
            if key is not None:
                check_bot_allowed(request, key)
            key = limited_to
        report = await cost_report(
            costs, by=cast(CostScope, by), since=params.get("since", "7d"), today=utc_today(clock), key=key
        )
        return JSONResponse(report.to_dict())

    return [Route("/v1/costs", get_costs, methods=["GET"])]
