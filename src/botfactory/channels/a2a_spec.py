"""The A2A channel's operations for the OpenAPI document.

A2A has its own description, the agent card, and its own envelope, JSON-RPC 2.0: the document shows the envelope
only (errors in the protocol answer with status 200 and an ``error`` member, as JSON-RPC does).
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from botfactory.channels.a2a import A2A_CARD_PATH, A2A_PREFIX
from botfactory.channels.openapi import ApiResponse, Operation

__all__ = ["A2A_OPERATIONS"]


class AgentCardDocument(BaseModel):
    """The bot's A2A agent card (A2A 1.0, with the 0.3 fields older clients read)."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str
    version: str
    supportedInterfaces: list[dict[str, Any]]


class JsonRpcRequest(BaseModel):
    """A JSON-RPC 2.0 request: ``SendMessage``/``SendStreamingMessage`` (A2A 1.0) or ``message/send``/``message/stream``
    (0.3)."""

    model_config = ConfigDict(extra="allow")

    jsonrpc: str
    method: str
    id: str | int | None = None
    params: dict[str, Any] | None = None


class JsonRpcResponse(BaseModel):
    """A JSON-RPC 2.0 response: ``result`` (the agent's message) or ``error``."""

    model_config = ConfigDict(extra="allow")

    jsonrpc: str
    id: str | int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


A2A_OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        method="GET",
        path=f"{A2A_PREFIX}/{{bot}}{A2A_CARD_PATH}",
        operation_id="a2aAgentCard",
        summary="A bot's A2A agent card",
        description="Public, as A2A discovery expects: the bot's name, description and skill, its JSON-RPC "
        "endpoint and how to authenticate. See docs/a2a.md.",
        tag="a2a",
        public=True,
        responses={200: ApiResponse(description="The agent card.", model=AgentCardDocument)},
    ),
    Operation(
        method="POST",
        path=f"{A2A_PREFIX}/{{bot}}",
        operation_id="a2aJsonRpc",
        summary="Talk to a bot over A2A (JSON-RPC)",
        description="Each message runs one turn in the session `a2a:{bot}:{contextId}` and is answered with one "
        "agent message. Streaming methods answer with server-sent events.",
        tag="a2a",
        body=JsonRpcRequest,
        errors=(403,),
        responses={
            200: ApiResponse(
                description="The JSON-RPC response (or its event stream).", model=JsonRpcResponse, event_stream=True
            )
        },
    ),
)
