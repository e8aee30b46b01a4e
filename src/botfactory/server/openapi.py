"""The operations the server answers, for ``/openapi.json`` and the API-key middleware's public routes."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any, Final

from botfactory.channels import (
    A2A_OPERATIONS,
    AGENTCORE_OPERATIONS,
    ALERTS_OPERATIONS,
    APPROVALS_OPERATIONS,
    AUDIT_OPERATIONS,
    COSTS_OPERATIONS,
    HTTP_OPERATIONS,
    METRICS_OPERATIONS,
    OPENAI_OPERATIONS,
    SLACK_OPERATIONS,
    ApiResponse,
    Operation,
    a2a_available,
    openapi_document,
)
from botfactory.server.platform import Platform

__all__ = ["TITLE", "api_operations", "full_document", "openapi_document"]

TITLE: Final = "botfactory"

_DOCUMENT = Operation(
    method="GET",
    path="/openapi.json",
    operation_id="openapi",
    summary="This OpenAPI document",
    tag="server",
    public=True,
    responses={200: ApiResponse(description="The OpenAPI 3.1 document of this server.")},
)


def api_operations(platform: Platform | None = None) -> list[Operation]:
    """Every operation the app built for ``platform`` serves; ``None``: every operation there is.

    Slack's operations are served only when Slack is configured, A2A's only with the ``a2a`` extra.
    """
    slack = SLACK_OPERATIONS if platform is None or platform.slack is not None else ()
    a2a = A2A_OPERATIONS if platform is None or a2a_available() else ()
    return [
        _DOCUMENT,
        *HTTP_OPERATIONS,
        *APPROVALS_OPERATIONS,
        *ALERTS_OPERATIONS,
        *AUDIT_OPERATIONS,
        *COSTS_OPERATIONS,
        *METRICS_OPERATIONS,
        *OPENAI_OPERATIONS,
        *AGENTCORE_OPERATIONS,
        *slack,
        *a2a,
    ]


def full_document() -> dict[str, Any]:
    """The document with every operation (the committed ``docs/openapi.json``)."""
    return openapi_document(api_operations(), title=TITLE, version=version("botfactory"))
