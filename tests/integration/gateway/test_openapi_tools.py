"""OpenAPI tools against a real "tickets" API served by uvicorn on 127.0.0.1: schemas, auth, errors, encoding."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botfactory.errors import ConfigError, ToolError, ToolTimeoutError, ToolUnavailableError
from botfactory.gateway import (
    CallContext,
    CredentialRef,
    Gateway,
    GatewayCall,
    GatewayTool,
    OpenApiOperation,
    OpenApiTools,
    PolicySession,
    ToolSource,
)
from botfactory.testing import serve_app

pytestmark = pytest.mark.integration

TOKEN = "tok-tickets-4e1b"


def tickets_document(server: str = "/api") -> dict[str, Any]:
    """A small OpenAPI 3.1 document: public reads, bearer-protected writes, one operation without an id."""
    ticket_id = {"name": "ticket_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tickets", "version": "1.0"},
        "servers": [{"url": server}],
        "security": [{"bearer": []}],
        "paths": {
            "/tickets": {
                "get": {
                    "operationId": "listTickets",
                    "summary": "List tickets, newest first.",
                    "security": [],
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"$ref": "#/components/schemas/Status"}},
                        {"$ref": "#/components/parameters/Limit"},
                        {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    ],
                    "responses": {"200": {"description": "tickets"}},
                },
                "post": {
                    "operationId": "createTicket",
                    "summary": "Open a ticket.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Ticket"}}},
                    },
                    "responses": {"201": {"description": "created"}},
                },
            },
            "/tickets/{ticket_id}": {
                "parameters": [ticket_id],
                "get": {"operationId": "getTicket", "summary": "One ticket.", "security": []},
                "delete": {"operationId": "deleteTicket", "summary": "Delete a ticket."},
            },
            "/slow": {"get": {"operationId": "slow", "security": []}},
            "/health": {"get": {"summary": "No operationId: not a tool.", "security": []}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                "Limit": {
                    "name": "limit",
                    "in": "query",
                    "description": "At most this many.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                }
            },
            "schemas": {
                "Status": {"type": "string", "enum": ["open", "closed"]},
                "Ticket": {
                    "type": "object",
                    "required": ["id", "title"],
                    "properties": {
                        "id": {"type": "string", "readOnly": True},
                        "title": {"type": "string"},
                        "status": {"$ref": "#/components/schemas/Status"},
                        "replies": {"type": "array", "items": {"$ref": "#/components/schemas/Ticket"}},
                    },
                },
            },
        },
    }


@dataclass
class TicketsApi:
    """The served API: its URL and every request it received."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    tickets: dict[str, dict[str, Any]] = field(default_factory=dict)


@pytest.fixture
async def api() -> AsyncIterator[TicketsApi]:
    state = TicketsApi(url="")
    state.tickets["T-1"] = {"id": "T-1", "title": "VPN is down", "status": "open"}
    state.tickets["T-2"] = {"id": "T-2", "title": "Printer", "status": "closed"}

    def record(request: Request) -> None:
        state.requests.append(
            {
                "method": request.method,
                "raw_path": request.scope["raw_path"].decode(),
                "path_params": dict(request.path_params),
                "query": list(request.query_params.multi_items()),
                "headers": dict(request.headers),
            }
        )

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    async def document(request: Request) -> Response:
        return JSONResponse(tickets_document())

    async def list_tickets(request: Request) -> Response:
        record(request)
        found = [t for t in state.tickets.values() if request.query_params.get("status") in (None, t["status"])]
        return JSONResponse({"tickets": found[: int(request.query_params.get("limit", 50))]})

    async def create_ticket(request: Request) -> Response:
        record(request)
        if not authorized(request):
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
        body = await request.json()
        ticket = {"id": f"T-{len(state.tickets) + 1}", "status": "open", **body}
        state.tickets[ticket["id"]] = ticket
        return JSONResponse(ticket, status_code=201)

    async def get_ticket(request: Request) -> Response:
        record(request)
        ticket = state.tickets.get(request.path_params["ticket_id"])
        if ticket is None:
            return JSONResponse({"error": f"no ticket {request.path_params['ticket_id']}"}, status_code=404)
        return JSONResponse(ticket)

    async def delete_ticket(request: Request) -> Response:
        record(request)
        if not authorized(request):
            return JSONResponse({"error": "missing or invalid bearer token"}, status_code=401)
        state.tickets.pop(request.path_params["ticket_id"], None)
        return Response(status_code=204)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(1.0)
        return JSONResponse({"late": True})

    async def admin(request: Request) -> Response:
        record(request)
        return JSONResponse({"admin": True})

    app = Starlette(
        routes=[
            Route("/openapi.json", document),
            Route("/api/tickets", list_tickets, methods=["GET"]),
            Route("/api/tickets", create_ticket, methods=["POST"]),
            # `path` convertor: an id holding an (encoded) slash still reaches this handler, so the test sees it.
            Route("/api/tickets/{ticket_id:path}", get_ticket, methods=["GET"]),
            Route("/api/tickets/{ticket_id:path}", delete_ticket, methods=["DELETE"]),
            Route("/api/slow", slow),
            Route("/api/admin", admin),
        ]
    )
    async with serve_app(app) as url:
        state.url = url
        yield state


@pytest.fixture
async def tickets(api: TicketsApi) -> AsyncIterator[OpenApiTools]:
    source = OpenApiTools(
        "tickets",
        document=tickets_document(f"{api.url}/api"),
        credential=CredentialRef(name="tickets", secret="tickets_token"),
        timeout_s=5.0,
        approval=["deleteTicket"],
    )
    await source.start()
    try:
        yield source
    finally:
        await source.aclose()


def context(credentials: dict[str, str] | None = None, *, key: str = "turn-1:2") -> CallContext:
    return CallContext(
        session_id="s1",
        turn_id="turn-1",
        bot="helpdesk",
        agent_path="helpdesk",
        user_id="slack:T1:U1",
        idempotency_key=key,
        credentials=credentials or {},
    )


def tool(source: OpenApiTools, name: str) -> OpenApiOperation:
    return next(t for t in source.tools if t.name == name)


async def test_operations_become_tools_with_schemas_from_the_document(tickets: OpenApiTools, api: TicketsApi) -> None:
    assert isinstance(tickets, ToolSource)
    assert [t.name for t in tickets.tools] == ["listTickets", "createTicket", "getTicket", "deleteTicket", "slow"]
    assert all(isinstance(t, GatewayTool) for t in tickets.tools)

    listing = tool(tickets, "listTickets")
    assert listing.description == "List tickets, newest first."
    assert (listing.side_effect, listing.credentials, listing.owner) == ("read", (), "tickets")
    assert listing.parameters == {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["open", "closed"]},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "At most this many."},
            "tag": {"type": "array", "items": {"type": "string"}},
        },
        "additionalProperties": False,
    }

    create = tool(tickets, "createTicket")
    assert (create.side_effect, create.method, create.path, create.base_url) == (
        "write",
        "POST",
        "/tickets",
        f"{api.url}/api",
    )
    assert create.credentials == (CredentialRef(name="tickets", secret="tickets_token"),)
    assert create.parameters["required"] == ["body"]
    body = create.parameters["properties"]["body"]
    assert "id" not in body["properties"] and body["required"] == ["title"]  # readOnly: the server assigns it
    assert body["properties"]["status"] == {"type": "string", "enum": ["open", "closed"]}
    assert body["properties"]["replies"]["items"] == {"description": "recursive Ticket"}  # the cycle is cut

    get = tool(tickets, "getTicket")
    assert get.parameters["required"] == ["ticket_id"]  # declared on the path item
    assert (tool(tickets, "deleteTicket").needs_approval, get.needs_approval) == (True, False)


async def test_get_with_query_parameters_returns_json(tickets: OpenApiTools, api: TicketsApi) -> None:
    result = await tool(tickets, "listTickets").invoke({"status": "open", "limit": 5, "tag": ["vpn", "p1"]}, context())

    assert result == {"tickets": [{"id": "T-1", "title": "VPN is down", "status": "open"}]}
    sent = api.requests[-1]
    assert sent["query"] == [("status", "open"), ("limit", "5"), ("tag", "vpn"), ("tag", "p1")]
    assert "authorization" not in sent["headers"]  # public operation: no credential sent
    assert "idempotency-key" not in sent["headers"]


async def test_post_sends_body_bearer_token_and_idempotency_key(tickets: OpenApiTools, api: TicketsApi) -> None:
    create = tool(tickets, "createTicket")

    result = await create.invoke({"body": {"title": "Laptop broken"}}, context({"tickets": TOKEN}, key="turn-1:7"))

    assert result == {"id": "T-3", "status": "open", "title": "Laptop broken"}
    sent = api.requests[-1]
    assert sent["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert sent["headers"]["idempotency-key"] == "turn-1:7"
    assert sent["headers"]["content-type"] == "application/json"
    assert api.tickets["T-3"]["title"] == "Laptop broken"


async def test_the_gateway_injects_the_vault_credential(tickets: OpenApiTools, api: TicketsApi) -> None:
    class Vault:
        async def resolve(self, refs: Sequence[CredentialRef], *, user_id: str | None) -> dict[str, str]:
            return {ref.name: {"tickets_token": TOKEN}[ref.source] for ref in refs}

    create = tool(tickets, "createTicket")
    call = GatewayCall(
        bot="helpdesk",
        agent_path="helpdesk",
        tool=create,
        arguments={"body": {"title": "Through the gateway"}},
        granted={create.name},
        session=PolicySession(id="s1", channel="C1"),
        turn_id="turn-1",
        idempotency_key="turn-1:1",
    )

    result = await Gateway(credentials=Vault()).call(call)

    assert result["title"] == "Through the gateway"
    assert api.requests[-1]["headers"]["authorization"] == f"Bearer {TOKEN}"
    with pytest.raises(ToolError, match="invalid arguments"):  # the schema from the document is enforced
        await Gateway(credentials=Vault()).call(
            GatewayCall(**{**call.__dict__, "arguments": {"body": {"status": "open"}}})
        )


async def test_wrong_or_missing_credential_is_a_tool_error_with_the_401(tickets: OpenApiTools, api: TicketsApi) -> None:
    with pytest.raises(ToolError, match=r"HTTP 401 Unauthorized: .*invalid bearer token.*secrets set tickets_token"):
        await tool(tickets, "createTicket").invoke({"body": {"title": "x"}}, context({"tickets": "wrong"}))

    anonymous = OpenApiTools("tickets", document=tickets_document(f"{api.url}/api"))
    await anonymous.start()
    try:
        create = tool(anonymous, "createTicket")
        assert create.credentials == ()
        with pytest.raises(ToolError, match="HTTP 401") as caught:
            await create.invoke({"body": {"title": "x"}}, context())
    finally:
        await anonymous.aclose()
    assert "give the OpenAPI tool source a credential" in caught.value.message
    assert "authorization" not in api.requests[-1]["headers"]
    assert len(api.tickets) == 2


async def test_not_found_is_a_tool_error_with_the_body(tickets: OpenApiTools) -> None:
    with pytest.raises(ToolError, match=r"getTicket: GET /tickets/\{ticket_id\} answered HTTP 404 Not Found") as e:
        await tool(tickets, "getTicket").invoke({"ticket_id": "T-99"}, context())
    assert "no ticket T-99" in e.value.message
    assert not e.value.retryable


async def test_path_parameters_are_encoded_and_cannot_climb(tickets: OpenApiTools, api: TicketsApi) -> None:
    get = tool(tickets, "getTicket")

    with pytest.raises(ToolError, match="HTTP 404"):
        await get.invoke({"ticket_id": "../admin"}, context())
    with pytest.raises(ToolError, match="HTTP 404"):
        await get.invoke({"ticket_id": ".."}, context())
    with pytest.raises(ToolError, match="HTTP 404"):
        await get.invoke({"ticket_id": "a b?c=1#x"}, context())

    assert [r["raw_path"] for r in api.requests] == [
        "/api/tickets/..%2Fadmin",
        "/api/tickets/%2E%2E",
        "/api/tickets/a%20b%3Fc%3D1%23x",
    ]
    assert [r["path_params"]["ticket_id"] for r in api.requests] == ["../admin", "..", "a b?c=1#x"]
    assert all(r["query"] == [] for r in api.requests)


async def test_delete_without_content_reports_success(tickets: OpenApiTools, api: TicketsApi) -> None:
    result = await tool(tickets, "deleteTicket").invoke({"ticket_id": "T-2"}, context({"tickets": TOKEN}))

    assert result == "HTTP 204 No Content"
    assert "T-2" not in api.tickets
    assert api.requests[-1]["headers"]["idempotency-key"] == "turn-1:2"


async def test_slow_endpoint_times_out(api: TicketsApi) -> None:
    source = OpenApiTools("tickets", document=tickets_document(f"{api.url}/api"), timeout_s=0.2, include=["slow"])
    await source.start()
    try:
        with pytest.raises(ToolTimeoutError, match=r"slow: GET /slow did not answer within 0.2 s"):
            await source.tools[0].invoke({}, context())
    finally:
        await source.aclose()


async def test_server_down_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket is closed
    source = OpenApiTools("tickets", document=tickets_document(f"http://127.0.0.1:{port}/api"))
    await source.start()
    try:
        with pytest.raises(ToolUnavailableError, match=rf"cannot reach http://127.0.0.1:{port}/api") as caught:
            await tool(source, "listTickets").invoke({}, context())
        assert caught.value.retryable
        with pytest.raises(ToolUnavailableError, match="cannot fetch the OpenAPI document"):
            await OpenApiTools("down", document=f"http://127.0.0.1:{port}/openapi.json").start()
    finally:
        await source.aclose()


async def test_include_and_exclude_filter_operations(api: TicketsApi) -> None:
    document = tickets_document(f"{api.url}/api")
    only = OpenApiTools("t", document=document, include=["listTickets", "getTicket"], prefix="tickets_")
    without = OpenApiTools("t", document=document, exclude=["deleteTicket", "tickets_slow"], prefix="tickets_")
    for source in (only, without):
        await source.start()
        await source.aclose()

    assert [t.name for t in only.tools] == ["tickets_listTickets", "tickets_getTicket"]
    assert [t.name for t in without.tools] == ["tickets_listTickets", "tickets_createTicket", "tickets_getTicket"]


async def test_document_fetched_from_a_url_and_refreshed(api: TicketsApi) -> None:
    source = OpenApiTools("tickets", document=f"{api.url}/openapi.json")
    await source.start()
    try:
        listing = tool(source, "listTickets")
        assert listing.base_url == f"{api.url}/api"  # the document's relative server, against its URL
        assert (await listing.invoke({"limit": 1}, context()))["tickets"] == [
            {"id": "T-1", "title": "VPN is down", "status": "open"}
        ]
        await source.refresh()
        assert tool(source, "listTickets") is not listing
        assert len(source.tools) == 5
    finally:
        await source.aclose()
    with pytest.raises(ToolUnavailableError, match="is closed"):
        await tool(source, "listTickets").invoke({}, context())


async def test_bad_document_url_is_reported(api: TicketsApi) -> None:
    with pytest.raises(ToolUnavailableError, match="answered HTTP 404; check the URL"):
        await OpenApiTools("t", document=f"{api.url}/nothing.json").start()
    with pytest.raises(ConfigError, match="not an OpenAPI 3 document"):
        await OpenApiTools("t", document=f"{api.url}/api/tickets").start()  # a failed start closes its client
