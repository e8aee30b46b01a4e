"""The metrics route's operation, for the OpenAPI document."""

from __future__ import annotations

from botfactory.channels.openapi import ApiResponse, Operation

__all__ = ["METRICS_OPERATIONS"]

METRICS_OPERATIONS = (
    Operation(
        method="GET",
        path="/metrics",
        operation_id="metrics",
        summary="Prometheus metrics",
        description=(
            "This process's series in the Prometheus text format: turns, turn latency and time to first token, model "
            "tokens and cost, tool calls, errors and policy denials, and gauges read from the database at each "
            "scrape (inbox depth and age, pending approvals, budget left). Every series is in docs/metrics.md. "
            "A key limited to one bot is refused: the series cover every bot."
        ),
        tag="observability",
        errors=(403,),
        responses={200: ApiResponse(description="The series, Prometheus text format 0.0.4.", media_type="text/plain")},
    ),
)
