"""The OpenAPI document of the HTTP surface, built from the channels' declared operations.

Each channel declares its operations (:class:`Operation`): path, method, request body model, query parameters
and the responses it can give, with pydantic models for their bodies. :func:`openapi_document` turns them into
one OpenAPI 3.1 document, served at ``/openapi.json``. A contract test checks that every route the server
mounts is declared and nothing else is, and a fuzz test (schemathesis) checks that real responses match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

__all__ = ["ApiResponse", "Operation", "QueryParam", "openapi_document"]

_PATH_PARAM: Final = re.compile(r"{([a-z_]+)}")
_REF: Final = "#/components/schemas/{model}"
_ERRORS: Final[Mapping[int, str]] = {
    400: "Bad input: the message says what to fix.",
    401: "No valid API key: send `Authorization: Bearer <key>` (see `botfactory keys create`).",
    403: "The API key may not use this bot.",
    404: "No such bot, session or message.",
    409: "Conflict with the current state (e.g. the bot rejects messages while it answers).",
    413: "The request body is over `max_request_bytes`.",
    429: "A budget or rate limit is used up.",
    504: "The turn did not finish in time.",
}


@dataclass(frozen=True, kw_only=True)
class ApiResponse:
    """One response an operation can give: a JSON body (a model), an event stream, plain text, or nothing."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    event_stream: bool = False
    """The same status may also answer with ``text/event-stream`` (the caller asked to stream)."""
    alternatives: tuple[str, ...] = ()
    """Other media types the same status may answer with, as text (e.g. Slack's ``url_verification``)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Response headers: name -> description."""


@dataclass(frozen=True, kw_only=True)
class QueryParam:
    """A query parameter (or a request header, with ``location="header"``)."""

    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    location: Literal["query", "header"] = "query"
    required: bool = False


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One HTTP operation as the outside world sees it.

    Attributes:
        path: The path template, with ``{name}`` parameters (strings).
        errors: Error statuses beyond the automatic ones (400 with a body or parameters, 401 unless ``public``,
            404 with path parameters, 413 with a body).
        public: Needs no API key (health, Slack's signed requests, the AgentCore ping).
    """

    method: Literal["GET", "POST", "DELETE"]
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, ApiResponse]
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    params: tuple[QueryParam, ...] = ()
    errors: tuple[int, ...] = ()
    public: bool = False
    description: str = ""

    @property
    def path_params(self) -> list[str]:
        """Names of the path's parameters, in order."""
        return _PATH_PARAM.findall(self.path)

    def error_statuses(self) -> list[int]:
        """Every error status this operation documents."""
        statuses = set(self.errors)
        if self.body is not None or self.params or self.path_params:
            statuses.add(400)
        if self.body is not None:
            statuses.add(413)
        if not self.public:
            statuses.add(401)
        if self.path_params:
            statuses.add(404)
        return sorted(statuses)


class ErrorDetail(BaseModel):
    """What went wrong and what to do next."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


def openapi_document(operations: Iterable[Operation], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``.

    Raises:
        ValueError: two operations share a method and path, or an operation id.
    """
    ops = list(operations)
    _check_unique(ops)
    models: set[type[BaseModel]] = {ErrorBody}
    for op in ops:
        if op.body is not None:
            models.add(op.body)
        models.update(r.model for r in op.responses.values() if r.model is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, defs = models_json_schema([(m, "validation") for m in ordered], ref_template=_REF)
    ref_of = {model: refs[(model, "validation")] for model in ordered}
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, ref_of)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "A key from `botfactory keys create`."}
            },
        },
        "security": [{"apiKey": []}],
    }


def _check_unique(ops: list[Operation]) -> None:
    seen: set[tuple[str, str]] = set()
    ids: set[str] = set()
    for op in ops:
        if (op.method, op.path) in seen or op.operation_id in ids:
            raise ValueError(f"operation {op.method} {op.path} ({op.operation_id}) is declared twice")
        seen.add((op.method, op.path))
        ids.add(op.operation_id)


def _operation(op: Operation, ref_of: Mapping[type[BaseModel], Mapping[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag]}
    if op.description:
        spec["description"] = op.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 256}}
        for name in op.path_params
    ]
    parameters += [
        {"name": p.name, "in": p.location, "required": p.required, "description": p.description, "schema": p.schema}
        for p in op.params
    ]
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {"required": True, "content": {op.body_media_type: {"schema": ref_of[op.body]}}}
    responses: dict[str, Any] = {}
    for status, response in sorted(op.responses.items()):
        responses[str(status)] = _response(response, ref_of)
    for status in op.error_statuses():
        responses.setdefault(
            str(status), _response(ApiResponse(description=_ERRORS.get(status, "Error."), model=ErrorBody), ref_of)
        )
    spec["responses"] = responses
    if op.public:
        spec["security"] = []
    return spec


def _response(response: ApiResponse, ref_of: Mapping[type[BaseModel], Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": response.description}
    if response.model is not None:
        out["content"] = {response.media_type: {"schema": ref_of[response.model]}}
    elif response.media_type != "application/json":
        out["content"] = {response.media_type: {"schema": {"type": "string"}}}
    for media_type in (*response.alternatives, *(("text/event-stream",) if response.event_stream else ())):
        out.setdefault("content", {})[media_type] = {"schema": {"type": "string"}}
    if response.headers:
        out["headers"] = {
            name: {"description": text, "schema": {"type": "string"}} for name, text in response.headers.items()
        }
    return out
