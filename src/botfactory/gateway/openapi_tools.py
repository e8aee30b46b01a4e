"""OpenAPI 3 documents as tool sources: each operation with an ``operationId`` becomes a tool.

:class:`OpenApiTools` reads the document at :meth:`~OpenApiTools.start` (a local JSON or YAML file, a mapping, or an
``http(s)`` URL), turns every operation into an :class:`OpenApiOperation` whose JSON schema combines the path, query
and header parameters with the JSON request body (under ``body``), and calls the API over HTTP when the gateway runs
the tool. Where the credential goes (``Authorization: Bearer``, Basic, an API-key header, query parameter or cookie)
follows the document's ``securitySchemes``; its value comes from the vault through the gateway. See
docs/openapi-tools.md.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import logging
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin

import httpx

from botfactory.errors import (
    ConfigError,
    CredentialError,
    CredentialRejectedError,
    ToolArgumentsError,
    ToolError,
    ToolTimeoutError,
    ToolUnavailableError,
)
from botfactory.gateway._openapi_schema import UnusableOperationError, deref, to_json_schema
from botfactory.gateway.catalogue import CallContext, CredentialRef, SideEffect

__all__ = ["OpenApiOperation", "OpenApiTools"]

logger = logging.getLogger(__name__)

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BODY = "body"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_TEMPLATE = re.compile(r"\{([^{}]+)\}")
# Header parameters OpenAPI says to ignore: the client sets them itself.
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_ERROR_BODY_CHARS = 300
_DESCRIPTION_CHARS = 1000

Placement = Literal["bearer", "basic", "header", "query", "cookie"]
Location = Literal["path", "query", "header", "body"]
_LOCATIONS: dict[str, Location] = {"path": "path", "query": "query", "header": "header"}
_KEY_PLACEMENTS: dict[str, Placement] = {"header": "header", "query": "query", "cookie": "cookie"}


@dataclass(frozen=True)
class _Auth:
    """Where an operation's credential goes: ``placement`` and, for API keys, the header/parameter/cookie name."""

    placement: Placement
    key: str = ""


@dataclass(frozen=True)
class _Param:
    """One argument of an operation and where it goes in the request."""

    location: Location
    explode: bool = True


@dataclass(frozen=True, kw_only=True, eq=False)
class OpenApiOperation:
    """One operation of an OpenAPI document, as a tool the gateway runs; built by :meth:`OpenApiTools.start`.

    Attributes:
        name: The tool name: the source's prefix plus the ``operationId``, made safe for model APIs.
        description: The operation's summary and description.
        parameters: JSON schema of the arguments: path, query and header parameters by name, the JSON request body
            under ``body``.
        side_effect: ``read`` for GET, HEAD and OPTIONS, ``write`` otherwise.
        timeout_s: The HTTP request's timeout.
        credentials: The source's credential, unless the document marks the operation as public.
        needs_approval: The ``operationId`` is in the source's ``approval`` list.
        owner: The name of the source.
        method: The HTTP method, upper case.
        path: The path template as the document writes it, e.g. ``/tickets/{ticket_id}``.
        operation_id: The ``operationId`` as the document writes it.
        base_url: The server the operation is called on.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    side_effect: SideEffect
    timeout_s: float | None
    credentials: tuple[CredentialRef, ...]
    needs_approval: bool
    owner: str
    method: str
    path: str
    operation_id: str
    base_url: str
    _params: Mapping[str, _Param] = field(repr=False)
    _auth: _Auth | None = field(repr=False)
    _body_type: str = field(default="application/json", repr=False)
    _client: Callable[[], httpx.AsyncClient] = field(repr=False)

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        """Send the HTTP request; return the parsed JSON answer (or its text).

        Raises:
            ToolError: the API answered with a status outside 2xx (the message has the status and the body's start).
            ToolTimeoutError: no answer within :attr:`timeout_s`.
            ToolUnavailableError: the API cannot be reached.
            CredentialError: the gateway did not provide the declared credential.
        """
        request = self._request(arguments, context)
        try:
            response = await self._client().send(request)
        except httpx.TimeoutException:
            raise ToolTimeoutError(
                f"{self.name}: {self.method} {self.path} did not answer within {self.timeout_s:g} s; "
                "try again later or with a narrower request"
            ) from None
        except httpx.TransportError as exc:
            raise ToolUnavailableError(
                f"{self.name}: cannot reach {self.base_url} ({type(exc).__name__}); check that the API is running",
                retryable=isinstance(exc, httpx.ConnectError),
            ) from exc
        try:
            if response.is_success:
                return _result(response)
            raise self._status_error(response)
        finally:
            await response.aclose()

    def _request(self, arguments: Mapping[str, Any], context: CallContext) -> httpx.Request:
        path = self.path
        query: list[tuple[str, str | int | float | bool | None]] = []
        headers = {"Accept": "application/json"}
        cookies: list[str] = []
        body: Any = None
        has_body = False
        for key, value in arguments.items():
            param = self._params.get(key)
            if param is None or value is None:
                continue
            if param.location == "path":
                path = path.replace("{" + key + "}", _path_segment(value))
            elif param.location == "query":
                query.extend((key, item) for item in _query_values(value, explode=param.explode))
            elif param.location == "header":
                headers[key] = _text(value)
            else:
                body, has_body = value, True
        missing = _TEMPLATE.findall(path)
        if missing:
            raise ToolArgumentsError(f"invalid arguments for tool '{self.name}': {', '.join(missing)} is required")
        if self.side_effect == "write":
            headers["Idempotency-Key"] = context.idempotency_key
        if has_body:
            headers["Content-Type"] = self._body_type
        self._authenticate(headers, query, cookies, context)
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        timeout = httpx.Timeout(self.timeout_s)
        return self._client().build_request(
            self.method,
            self.base_url + path,
            params=httpx.QueryParams(query),
            headers=headers,
            json=body if has_body else None,
            timeout=timeout,
        )

    def _authenticate(
        self,
        headers: dict[str, str],
        query: list[tuple[str, str | int | float | bool | None]],
        cookies: list[str],
        context: CallContext,
    ) -> None:
        if not self.credentials or self._auth is None:
            return
        ref = self.credentials[0]
        value = context.credentials.get(ref.name)
        if value is None:
            raise CredentialError(
                f"tool {self.name} declares credential {ref.name} but the call carries none; "
                "run the tool through the gateway with a credential provider"
            )
        auth = self._auth
        if auth.placement == "bearer":
            headers["Authorization"] = f"Bearer {value}"
        elif auth.placement == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(value.encode()).decode("ascii")
        elif auth.placement == "header":
            headers[auth.key] = value
        elif auth.placement == "query":
            query.append((auth.key, value))
        else:
            cookies.append(f"{auth.key}={quote(value, safe='')}")

    def _status_error(self, response: httpx.Response) -> ToolError:
        status = response.status_code
        snippet = response.text[:_ERROR_BODY_CHARS].strip()
        message = f"{self.name}: {self.method} {self.path} answered HTTP {status} {response.reason_phrase}"
        if snippet:
            message += f": {snippet}"
        retryable = status == 429 or status >= 500
        if status == 401 and self.credentials:
            source = self.credentials[0].source
            message += f" (check the credential: `botfactory secrets set {source}`)"
            return CredentialRejectedError(message)
        if status in (401, 403):
            if self.credentials:
                source = self.credentials[0].source
                message += f" (check the credential: `botfactory secrets set {source}`)"
            else:
                message += " (the API wants credentials: give the OpenAPI tool source a credential)"
        elif retryable:
            message += " (try again later)"
        return ToolError(message, retryable=retryable)


class OpenApiTools:
    """The operations of an OpenAPI 3 document as tools (a :class:`~botfactory.gateway.ToolSource`).

    Each operation with an ``operationId`` becomes an :class:`OpenApiOperation`; others are skipped with a warning.
    Call :meth:`start` once before use and :meth:`aclose` at the end.

    Args:
        name: The source's name (the tools' ``owner``).
        document: A local file (``.json``, ``.yaml``, ``.yml``), the document itself as a mapping, or an ``http(s)``
            URL fetched at :meth:`start` and :meth:`refresh`.
        base_url: Where to send the calls; default: the document's first ``servers`` entry.
        credential: The credential every operation that needs one gets; the document's ``securitySchemes`` say
            where it goes.
        include: Only these operations (by ``operationId`` or tool name); ``None``: all.
        exclude: Leave these operations out (by ``operationId`` or tool name).
        prefix: Put before every tool name, e.g. ``tickets_``.
        timeout_s: Timeout of every call (and of fetching the document).
        approval: Operations (by ``operationId`` or tool name) a person must approve before each call.
        http: The HTTP client to use; default: one of the source's own, closed by :meth:`aclose`.

    Example:
        >>> tickets = OpenApiTools(  # doctest: +SKIP
        ...     "tickets", document="https://tickets.internal/openapi.json", credential=CredentialRef(name="tickets")
        ... )
        >>> await tickets.start()  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        *,
        document: Path | Mapping[str, Any] | str,
        base_url: str | None = None,
        credential: CredentialRef | None = None,
        include: Collection[str] | None = None,
        exclude: Collection[str] = (),
        prefix: str = "",
        timeout_s: float = 30.0,
        approval: Collection[str] = (),
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._name = name
        self.document = document
        self.base_url = base_url
        self.credential = credential
        self.include = frozenset(include) if include is not None else None
        self.exclude = frozenset(exclude)
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.approval = frozenset(approval)
        self._given_http = http
        self._http: httpx.AsyncClient | None = None
        self._tools: tuple[OpenApiOperation, ...] = ()

    @property
    def name(self) -> str:
        """The source's name."""
        return self._name

    @property
    def tools(self) -> Sequence[OpenApiOperation]:
        """The operations found by the last :meth:`start` or :meth:`refresh`; empty before."""
        return self._tools

    async def start(self) -> None:
        """Read the document and build the tools.

        Raises:
            ToolUnavailableError: the document's URL cannot be fetched.
            ConfigError: the document is missing, unparsable, not OpenAPI 3, names no server and no ``base_url``
                was given, or ``approval`` names an operation the document does not have.
        """
        if self._http is None:
            self._http = self._given_http or httpx.AsyncClient()
        try:
            await self.refresh()
        except BaseException:
            await self.aclose()  # a failed start leaves nothing open
            raise

    async def refresh(self) -> None:
        """Read the document again and replace the tools; on failure the previous tools stay."""
        if self._http is None:
            await self.start()
            return
        document, url = await self._read()
        self._tools = self._build(document, url)
        logger.info("source=<%s>, tools=<%d> | openapi tools loaded", self._name, len(self._tools))

    async def aclose(self) -> None:
        """Close the HTTP client if the source made it; idempotent."""
        http, self._http = self._http, None
        if http is not None and http is not self._given_http:
            await http.aclose()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise ToolUnavailableError(f"tool source {self._name} is closed; start it again before calling its tools")
        return self._http

    async def _read(self) -> tuple[Mapping[str, Any], str | None]:
        """The parsed document and, when it came from a URL, that URL (relative server URLs resolve against it)."""
        source = self.document
        if isinstance(source, Mapping):
            return _check_openapi(json.loads(json.dumps(source, default=str)), self._name), None
        if isinstance(source, str) and source.startswith(("http://", "https://")):
            return await self._fetch(source), source
        path = Path(source)
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the OpenAPI document of tool source {self._name} at {path} ({exc.strerror}); "
                "check the path"
            ) from None
        return _check_openapi(
            _parse(text, yaml=path.suffix.lower() in (".yaml", ".yml"), where=str(path)), self._name
        ), None

    async def _fetch(self, url: str) -> Mapping[str, Any]:
        try:
            response = await self._client().get(url, timeout=self.timeout_s, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ToolUnavailableError(
                f"cannot fetch the OpenAPI document of tool source {self._name} from {url} ({type(exc).__name__}); "
                "check that the API is running",
                retryable=True,
            ) from exc
        if not response.is_success:
            raise ToolUnavailableError(
                f"fetching the OpenAPI document of tool source {self._name} from {url} answered HTTP "
                f"{response.status_code}; check the URL"
            )
        is_yaml = "yaml" in response.headers.get("content-type", "") or url.lower().endswith((".yaml", ".yml"))
        return _check_openapi(_parse(response.text, yaml=is_yaml, where=url), self._name)

    def _build(self, document: Mapping[str, Any], url: str | None) -> tuple[OpenApiOperation, ...]:
        default_server = self._server(document.get("servers"), url)
        schemes = _security_schemes(document)
        tools: dict[str, OpenApiOperation] = {}
        seen_ids: set[str] = set()
        for method, path, path_item, operation in _operations(document):
            operation_id = operation.get("operationId")
            if not isinstance(operation_id, str) or not operation_id:
                logger.warning(
                    "source=<%s>, operation=<%s %s> | skipped: it has no operationId", self._name, method, path
                )
                continue
            name = _tool_name(self.prefix, operation_id)
            seen_ids.update((operation_id, name))
            if not self._wanted(operation_id, name):
                continue
            if name in tools:
                logger.warning(
                    "source=<%s>, tool=<%s> | skipped: another operation has the same name", self._name, name
                )
                continue
            server = self._server(operation.get("servers") or path_item.get("servers"), url) or default_server
            if server is None:
                raise ConfigError(
                    f"the OpenAPI document of tool source {self._name} names no server; "
                    "pass base_url= to OpenApiTools (or add servers to the document)"
                )
            try:
                tools[name] = self._operation(document, schemes, method, path, path_item, operation, name, server)
            except UnusableOperationError as exc:
                logger.warning("source=<%s>, operation=<%s %s> | skipped: %s", self._name, method, path, exc)
        unknown = sorted(self.approval - seen_ids)
        if unknown:
            raise ConfigError(
                f"approval of tool source {self._name} names {', '.join(unknown)}, which its OpenAPI document does "
                "not have; fix the operationId"
            )
        for entry in sorted((self.include or frozenset()) - seen_ids):
            logger.warning("source=<%s>, include=<%s> | no operation has this operationId", self._name, entry)
        return tuple(tools.values())

    def _wanted(self, operation_id: str, name: str) -> bool:
        if self.include is not None and operation_id not in self.include and name not in self.include:
            return False
        return operation_id not in self.exclude and name not in self.exclude

    def _server(self, servers: Any, url: str | None) -> str | None:
        if self.base_url is not None:
            return self.base_url.rstrip("/")
        if not isinstance(servers, list) or not servers or not isinstance(servers[0], Mapping):
            return None
        server = servers[0]
        address = str(server.get("url", ""))
        variables = server.get("variables") or {}
        address = _TEMPLATE.sub(lambda m: str((variables.get(m.group(1)) or {}).get("default", m.group(0))), address)
        if not address.startswith(("http://", "https://")):
            if url is None:
                raise ConfigError(
                    f"the OpenAPI document of tool source {self._name} names a relative server ({address}); "
                    "pass base_url= to OpenApiTools"
                )
            address = urljoin(url, address)
        return address.rstrip("/")

    def _operation(
        self,
        document: Mapping[str, Any],
        schemes: Mapping[str, Any],
        method: str,
        path: str,
        path_item: Mapping[str, Any],
        operation: Mapping[str, Any],
        name: str,
        server: str,
    ) -> OpenApiOperation:
        operation_id = str(operation["operationId"])
        parameters, params, body_type = _arguments(document, path_item, operation)
        auth = _auth_for(document, schemes, operation)
        verb = method.upper()
        return OpenApiOperation(
            name=name,
            description=_description(operation, verb, path),
            parameters=parameters,
            side_effect="read" if verb in _READ_METHODS else "write",
            timeout_s=self.timeout_s,
            credentials=(self.credential,) if self.credential is not None and auth is not None else (),
            needs_approval=operation_id in self.approval or name in self.approval,
            owner=self._name,
            method=verb,
            path=path,
            operation_id=operation_id,
            base_url=server,
            _params=params,
            _auth=auth,
            _body_type=body_type,
            _client=self._client,
        )


def _parse(text: str, *, yaml: bool, where: str) -> Any:
    if not yaml:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the OpenAPI document at {where} is not valid JSON ({exc}); fix or convert it") from None
    try:
        # PyYAML ships without type information, and comes with uvicorn[standard]; import it only for YAML.
        yaml_module: Any = importlib.import_module("yaml")
    except ImportError:
        raise ConfigError(
            f"the OpenAPI document at {where} is YAML, which needs PyYAML: pip install pyyaml (or use JSON)"
        ) from None
    try:
        loaded = yaml_module.safe_load(text)
    except yaml_module.YAMLError as exc:
        raise ConfigError(f"the OpenAPI document at {where} is not valid YAML ({exc}); fix it") from None
    # YAML turns dates and numeric keys into Python objects; bring the document back to plain JSON values.
    return json.loads(json.dumps(loaded, default=str))


def _check_openapi(document: Any, source: str) -> Mapping[str, Any]:
    version = document.get("openapi") if isinstance(document, Mapping) else None
    if not isinstance(document, Mapping) or not isinstance(version, str) or not version.startswith("3."):
        raise ConfigError(
            f"the document of tool source {source} is not an OpenAPI 3 document (no 'openapi: 3.x' field); "
            "Swagger 2.0 documents must be converted to OpenAPI 3 first"
        )
    return document


def _operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any], Mapping[str, Any]]]:
    paths = document.get("paths") or {}
    for path, item in paths.items():
        try:
            path_item = deref(item, document)
        except UnusableOperationError as exc:
            logger.warning("path=<%s> | skipped: %s", path, exc)
            continue
        if not isinstance(path_item, Mapping):
            continue
        for method in _METHODS:
            operation = path_item.get(method)
            if isinstance(operation, Mapping):
                yield method, str(path), path_item, operation


def _tool_name(prefix: str, operation_id: str) -> str:
    name = _NAME_UNSAFE.sub("_", prefix + operation_id)
    if not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")):
        name = "_" + name
    return name[:64]


def _description(operation: Mapping[str, Any], verb: str, path: str) -> str:
    summary = str(operation.get("summary") or "").strip()
    details = str(operation.get("description") or "").strip()
    text = "\n\n".join(part for part in (summary, details if details != summary else "") if part)
    text = text or f"{verb} {path}"
    return text if len(text) <= _DESCRIPTION_CHARS else text[: _DESCRIPTION_CHARS - 1] + "…"


def _arguments(
    document: Mapping[str, Any], path_item: Mapping[str, Any], operation: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, _Param], str]:
    """The operation's JSON schema, where each argument goes, and the request body's media type."""
    merged: dict[tuple[str, str], Mapping[str, Any]] = {}
    for raw in [*(path_item.get("parameters") or []), *(operation.get("parameters") or [])]:
        parameter = deref(raw, document)
        if isinstance(parameter, Mapping) and "name" in parameter and "in" in parameter:
            merged[(str(parameter["name"]), str(parameter["in"]))] = parameter  # the operation's override the path's
    properties: dict[str, Any] = {}
    required: list[str] = []
    params: dict[str, _Param] = {}
    for (name, location), parameter in merged.items():
        if location not in _LOCATIONS or (location == "header" and name.lower() in _IGNORED_HEADERS):
            if parameter.get("required") and location == "cookie":
                raise UnusableOperationError(f"required cookie parameter {name} is not supported")
            continue
        if name in properties or name == _BODY:
            raise UnusableOperationError(f"two arguments would be named {name}")
        parameter_schema = to_json_schema(_parameter_schema(parameter), document)
        if (
            isinstance(parameter_schema, dict)
            and parameter.get("description")
            and "description" not in parameter_schema
        ):
            parameter_schema["description"] = str(parameter["description"])
        properties[name] = parameter_schema
        if parameter.get("required") or location == "path":
            required.append(name)
        explode = parameter.get("explode", parameter.get("style", "form") == "form")
        params[name] = _Param(_LOCATIONS[location], explode=bool(explode))
    body_type = "application/json"
    body = deref(operation.get("requestBody"), document) if operation.get("requestBody") else None
    if isinstance(body, Mapping):
        content = body.get("content") or {}
        body_type = next((media for media in content if _is_json(media)), "")
        if body_type:
            body_schema = to_json_schema((content[body_type] or {}).get("schema", {}), document, writing=True)
            if isinstance(body_schema, dict) and body.get("description") and "description" not in body_schema:
                body_schema["description"] = str(body["description"])
            properties[_BODY] = body_schema
            params[_BODY] = _Param("body")
            if body.get("required"):
                required.append(_BODY)
        elif body.get("required"):
            raise UnusableOperationError(f"its request body is not JSON ({', '.join(content) or 'no content'})")
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema, params, body_type or "application/json"


def _parameter_schema(parameter: Mapping[str, Any]) -> Any:
    if "schema" in parameter:
        return parameter["schema"]
    content = parameter.get("content")
    if isinstance(content, Mapping) and content:
        first = next(iter(content.values()))
        if isinstance(first, Mapping):
            return first.get("schema", {})
    return {"type": "string"}


def _is_json(media_type: str) -> bool:
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json")


def _security_schemes(document: Mapping[str, Any]) -> dict[str, Any]:
    schemes = (document.get("components") or {}).get("securitySchemes") or {}
    resolved: dict[str, Any] = {}
    for name, scheme in schemes.items():
        try:
            resolved[str(name)] = deref(scheme, document)
        except UnusableOperationError:
            continue
    return resolved


def _auth_for(document: Mapping[str, Any], schemes: Mapping[str, Any], operation: Mapping[str, Any]) -> _Auth | None:
    """Where the credential goes for this operation; ``None`` when the document marks it as public."""
    requirements = operation.get("security", document.get("security"))
    if requirements is None:
        candidates = list(schemes)  # the document says nothing per operation: its first scheme, if any
    else:
        candidates = [name for requirement in requirements if isinstance(requirement, Mapping) for name in requirement]
        if not candidates:
            return None  # `security: []` or only `{}`: anonymous access
    for name in candidates:
        auth = _placement(schemes.get(name))
        if auth is not None:
            return auth
    # No scheme we know how to fill (or none declared): a bearer token is what most APIs take.
    return _Auth("bearer")


def _placement(scheme: Any) -> _Auth | None:
    if not isinstance(scheme, Mapping):
        return None
    kind = str(scheme.get("type", "")).lower()
    if kind == "http":
        http_scheme = str(scheme.get("scheme", "")).lower()
        if http_scheme == "bearer":
            return _Auth("bearer")
        if http_scheme == "basic":
            return _Auth("basic")
        return None
    if kind == "apikey":
        where, key = _KEY_PLACEMENTS.get(str(scheme.get("in", ""))), str(scheme.get("name", ""))
        return _Auth(where, key) if where is not None and key else None
    if kind in ("oauth2", "openidconnect"):
        return _Auth("bearer")  # an access token (e.g. an oauth_client credential) is sent as a bearer token
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _path_segment(value: Any) -> str:
    """The value as one path segment: ``/`` and ``?`` encoded, ``.``/``..`` too, so it cannot climb the path."""
    segment = quote(_text(value), safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


def _query_values(value: Any, *, explode: bool) -> list[str]:
    if isinstance(value, list | tuple) and explode:
        return [_text(item) for item in value]
    return [_text(value)]


def _result(response: httpx.Response) -> Any:
    if not response.content:
        return f"HTTP {response.status_code} {response.reason_phrase}"
    if "json" in response.headers.get("content-type", ""):
        try:
            return response.json()
        except ValueError:
            pass
    return response.text
