"""The costs API's response and operation, for the OpenAPI document."""

from __future__ import annotations

from pydantic import BaseModel

from botfactory.channels.openapi import ApiResponse, Operation, QueryParam

__all__ = ["COSTS_OPERATIONS"]


class CostDay(BaseModel):
    """Tokens and spend of one bot, user or model alias on one UTC day."""

    day: str
    key: str
    tokens: int
    cost: float


class CostTotal(BaseModel):
    """Tokens and spend of one bot, user or model alias over the whole period."""

    key: str
    tokens: int
    cost: float


class CostSum(BaseModel):
    """Tokens and spend of every key over the whole period."""

    tokens: int
    cost: float


class Costs(BaseModel):
    """Spend over a period: per day and key (oldest first), per key (most expensive first), and in total."""

    by: str
    since: str
    until: str
    rows: list[CostDay]
    totals: list[CostTotal]
    total: CostSum


COSTS_OPERATIONS = (
    Operation(
        method="GET",
        path="/v1/costs",
        operation_id="getCosts",
        summary="Tokens and spend by bot, user or model",
        description=(
            "The usage counters every model call adds to, per UTC day and in total, priced from the `[prices]` "
            "table (local models cost 0 but count tokens). A key limited to one bot sees only that bot, and only "
            "`by=bot`."
        ),
        tag="costs",
        errors=(403,),
        params=(
            QueryParam(
                name="by",
                description="`bot` (default), `user` or `model` (alias).",
                schema={"type": "string", "enum": ["bot", "user", "model"]},
            ),
            QueryParam(
                name="since",
                description="`today`, `7d` (default: the last 7 UTC days, today included), `30d`, or `YYYY-MM-DD`.",
                schema={"type": "string", "pattern": "^(today|[0-9]{1,5}d|[0-9]{4}-[0-9]{2}-[0-9]{2})$"},
            ),
            QueryParam(
                name="key",
                description="Only this bot, user or model alias.",
                schema={"type": "string", "minLength": 1, "maxLength": 256},
            ),
        ),
        responses={200: ApiResponse(description="Spend over the period.", model=Costs)},
    ),
)
