"""What the HTTP channel's responses look like, and its operations for the OpenAPI document."""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel

from botfactory.channels.http import InvokeBody, MessageBody
from botfactory.channels.openapi import ApiResponse, Operation, QueryParam

__all__ = ["HTTP_OPERATIONS"]

_SSE: Final = "text/event-stream"


class Health(BaseModel):
    """The server is up; the bots it serves."""

    status: str
    bots: list[str]


class BotInfo(BaseModel):
    """A bot a client can talk to."""

    name: str
    description: str


class BotList(BaseModel):
    """The bots this server runs."""

    bots: list[BotInfo]


class InvokeReply(BaseModel):
    """How the message's turn ended, and the reply."""

    session_id: str
    turn_id: str | None
    status: str
    reply: str
    error_code: str | None


class MessageAccepted(BaseModel):
    """The message is queued (or was already: ``duplicate``)."""

    message_id: str
    session_id: str
    seq: int
    duplicate: bool


class SessionSummary(BaseModel):
    """One session in a listing."""

    id: str
    bot: str
    user_id: str | None
    state: str
    pending: int
    running_turn_id: str | None
    created_at: float
    updated_at: float


class SessionList(BaseModel):
    """Sessions, most recently active first."""

    sessions: list[SessionSummary]


class SessionMessage(BaseModel):
    """A message of the conversation (a user's or the bot's reply)."""

    id: str
    seq: int
    role: str
    text: str
    user_id: str | None
    turn_id: str | None
    status: str | None
    created_at: float


class SessionTurn(BaseModel):
    """One turn: what it answered, how it ended, what it cost, and its reply's delivery."""

    id: str
    status: str
    attempts: int
    reply: str | None
    reply_delivery: str | None
    error_code: str | None
    error_message: str | None
    input_tokens: int
    output_tokens: int
    cost: float
    message_ids: list[str]
    started_at: float | None
    finished_at: float | None


class SessionDetail(BaseModel):
    """Everything stored about a session."""

    id: str
    bot: str
    user_id: str | None
    created_at: float
    updated_at: float
    state: str
    pending: int
    running_turn_id: str | None
    messages: list[SessionMessage]
    turns: list[SessionTurn]


class CancelOutcome(BaseModel):
    """What a cancel did: the running turn is stopping (202) or there was none (200)."""

    session_id: str
    turn_id: str | None
    running: bool
    cancelled_messages: int


_BOOL: Final = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}
_EVENTS: Final = "Server-sent events: each stored event with its id, then new ones as they happen."

HTTP_OPERATIONS: Final[tuple[Operation, ...]] = (
    Operation(
        method="GET",
        path="/healthz",
        operation_id="health",
        summary="Health check",
        tag="server",
        public=True,
        responses={200: ApiResponse(description="Up.", model=Health)},
    ),
    Operation(
        method="GET",
        path="/v1/bots",
        operation_id="listBots",
        summary="List the bots",
        tag="bots",
        responses={200: ApiResponse(description="The bots.", model=BotList)},
    ),
    Operation(
        method="POST",
        path="/v1/bots/{bot}/invoke",
        operation_id="invokeBot",
        summary="Send a message and wait for the reply",
        description="JSON by default; with `Accept: text/event-stream` (or `?stream=true`) the turn's events "
        "stream as they happen, then `reply` (or `error`).",
        tag="bots",
        body=InvokeBody,
        params=(QueryParam(name="stream", description="Stream the turn's events.", schema=_BOOL),),
        errors=(403, 409, 429, 504),
        responses={
            200: ApiResponse(description="The turn ended (or its event stream).", model=InvokeReply, event_stream=True),
        },
    ),
    Operation(
        method="POST",
        path="/v1/bots/{bot}/sessions/{session_id}/messages",
        operation_id="postMessage",
        summary="Queue a message on a session",
        description="Any worker answers it; follow the session or its events. Idempotent on `dedup_key`.",
        tag="sessions",
        body=MessageBody,
        errors=(403, 409),
        responses={
            202: ApiResponse(description="Queued.", model=MessageAccepted, headers={"location": "The session's URL."}),
        },
    ),
    Operation(
        method="GET",
        path="/v1/sessions",
        operation_id="listSessions",
        summary="List sessions",
        description="A key limited to one bot lists that bot's sessions (asking for another bot's is 403).",
        tag="sessions",
        errors=(403,),
        params=(
            QueryParam(name="active", description="Only sessions active within the idle timeout.", schema=_BOOL),
            QueryParam(name="bot", description="Only this bot's sessions."),
            QueryParam(
                name="limit",
                description="At most this many (1-1000, default 100).",
                schema={"type": "string", "pattern": "^[0-9]{1,4}$"},
            ),
        ),
        responses={200: ApiResponse(description="The sessions.", model=SessionList)},
    ),
    Operation(
        method="GET",
        path="/v1/sessions/{session_id}",
        operation_id="getSession",
        summary="A session's state, messages, turns and replies",
        tag="sessions",
        responses={200: ApiResponse(description="The session.", model=SessionDetail)},
    ),
    Operation(
        method="GET",
        path="/v1/sessions/{session_id}/events",
        operation_id="sessionEvents",
        summary="Follow a session's events",
        description=_EVENTS + " Resume with `Last-Event-ID` or `?after=`; `?follow=false` stops after the stored ones.",
        tag="sessions",
        params=(
            QueryParam(
                name="after", description="Events after this id.", schema={"type": "string", "pattern": "^[0-9]+$"}
            ),
            QueryParam(name="follow", description="Keep the stream open for new events.", schema=_BOOL),
            QueryParam(
                name="Last-Event-ID",
                location="header",
                description="Resume after this event id.",
                schema={"type": "string", "pattern": "^[0-9]+$"},
            ),
        ),
        responses={200: ApiResponse(description=_EVENTS, media_type=_SSE)},
    ),
    Operation(
        method="POST",
        path="/v1/sessions/{session_id}/cancel",
        operation_id="cancelSession",
        summary="Cancel the running turn and queued messages",
        tag="sessions",
        responses={
            200: ApiResponse(description="Nothing was running; queued messages cancelled.", model=CancelOutcome),
            202: ApiResponse(description="The running turn is stopping.", model=CancelOutcome),
        },
    ),
)
