"""``GET /metrics``: this process's Prometheus series, in the Prometheus text format (see docs/metrics.md).

Authenticated like every other route: under ``botfactory serve`` Prometheus sends an API key as
``Authorization: Bearer <key>`` (``authorization`` in its scrape config). The series cover every bot, so a key
limited to one bot is refused (403).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from botfactory.channels._access import key_bot
from botfactory.errors import ForbiddenError
from botfactory.observability import Metrics

__all__ = ["METRICS_PATH", "metrics_routes"]

METRICS_PATH = "/metrics"


def metrics_routes(metrics: Metrics) -> list[BaseRoute]:
    """The scrape route of ``metrics``."""

    async def scrape(request: Request) -> Response:
        limited_to = key_bot(request)
        if limited_to is not None:
            raise ForbiddenError(
                f"this key is limited to bot {limited_to!r} and /metrics covers every bot; "
                "scrape with a key created without --bot"
            )
        body, content_type = await metrics.exposition()
        return Response(body, media_type=content_type)

    return [Route(METRICS_PATH, scrape, methods=["GET"])]
