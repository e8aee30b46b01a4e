"""Remote A2A agents as tool sources: each agent (the Agent2Agent protocol) becomes one gateway tool.

:class:`A2AAgents` reads each agent's card at :meth:`~A2AAgents.start` (``<url>/.well-known/agent-card.json``) with
the official ``a2a-sdk`` client, installed by the ``a2a`` extra. Each agent becomes an :class:`A2AAgentTool` named
after its card, described by the card and its skills, that takes one argument, ``request``. A call sends the
request as an A2A message and returns the agent's text answer. Calls from one botfactory session share one A2A
``contextId``, so the remote agent keeps the conversation; a retried call sends the same ``messageId``. See
docs/a2a.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from botfactory.errors import (
    ConfigError,
    CredentialError,
    MissingExtraError,
    ToolError,
    ToolTimeoutError,
    ToolUnavailableError,
)
from botfactory.gateway.catalogue import CallContext, CredentialRef, SideEffect
from botfactory.observability import current_trace_context

if TYPE_CHECKING:
    from a2a.client import Client
    from a2a.types.a2a_pb2 import AgentCard, Part, StreamResponse, Task

__all__ = ["A2AAgentTool", "A2AAgents"]

logger = logging.getLogger(__name__)

_SOURCE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_TOOL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_DESCRIPTION_CHARS = 1000
_POLL_S = 0.5
# The client's own HTTP timeout stops a call first; this only backs it up.
_TIMEOUT_GRACE_S = 1.0

_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"request": {"type": "string", "description": "What to ask the agent, in plain language."}},
    "required": ["request"],
    "additionalProperties": False,
}

AgentCaller = Callable[["A2AAgentTool", dict[str, Any], CallContext], Awaitable[Any]]
"""Sends one call of a tool to its agent (``A2AAgents._call``)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class A2AAgentTool:
    """One remote A2A agent, as the gateway runs it; built by :meth:`A2AAgents.start`.

    Attributes:
        name: The source's prefix plus the agent's name from its card, made safe for model APIs.
        description: The card's description and its skills.
        parameters: One required string, ``request``.
        side_effect: The source's ``side_effect`` (``write`` unless told otherwise: an agent may act).
        timeout_s: The source's call timeout.
        credentials: The source's credential, sent as ``Authorization: Bearer``.
        needs_approval: The source's ``approval``.
        owner: The source's ``owner``, or its name.
        url: The agent's base URL, where its card was found.
        agent_name: The agent's name as its card gives it.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    side_effect: SideEffect
    timeout_s: float | None
    credentials: tuple[CredentialRef, ...]
    needs_approval: bool
    owner: str
    url: str
    agent_name: str
    _caller: AgentCaller = field(repr=False)

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        """Send ``request`` to the agent; return its text answer.

        Raises:
            ToolError: the agent rejected the request or its task failed.
            ToolTimeoutError: no answer within :attr:`timeout_s`.
            ToolUnavailableError: the agent cannot be reached or failed internally.
            CredentialError: the gateway did not provide the declared credential.
        """
        return await self._caller(self, arguments, context)


class A2AAgents:
    """Remote A2A agents (a :class:`~botfactory.gateway.ToolSource`): one tool per agent.

    Call :meth:`start` once before use and :meth:`aclose` at the end.

    Args:
        name: The source's name: 1-64 lower-case letters, digits, ``_`` or ``-``, starting with a letter.
        url: The base URL of each agent (one or several), where its card is at ``/.well-known/agent-card.json``,
            e.g. ``http://agents.internal:9999`` or a botfactory bot, ``http://botfactory:8000/a2a/support``.
        headers: HTTP headers sent with every request, the card's included.
        credential: A vault secret (name or :class:`~botfactory.gateway.CredentialRef`) the gateway injects as
            ``Authorization: Bearer <value>`` on every call, e.g. another botfactory's API key.
        prefix: Put before every tool name, e.g. ``remote_``.
        timeout_s: Timeout of every call.
        side_effect: ``write`` (default: a remote agent may change things) or ``read``.
        approval: A person must approve each call.
        owner: Who answers for the tools; default: ``name``.
        connect_timeout_s: Timeout of reading each card.

    Raises:
        ConfigError: the name, a URL or a timeout is invalid.

    Example:
        >>> peers = A2AAgents("peers", url="http://127.0.0.1:8000/a2a/support", credential="peer_key")  # doctest: +SKIP
        >>> await peers.start()  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        *,
        url: str | Sequence[str],
        headers: dict[str, str] | None = None,
        credential: str | CredentialRef | None = None,
        prefix: str = "",
        timeout_s: float = 120.0,
        side_effect: SideEffect = "write",
        approval: bool = False,
        owner: str | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if not _SOURCE_NAME.fullmatch(name):
            raise ConfigError(
                f"A2A source name {name!r} is invalid: use 1-64 lower-case letters, digits, '_' or '-', "
                "starting with a letter"
            )
        urls = (url,) if isinstance(url, str) else tuple(url)
        if not urls or any(not u.startswith(("http://", "https://")) for u in urls):
            raise ConfigError(f"A2A source {name}: give each agent's base url, starting with http:// or https://")
        if timeout_s <= 0 or connect_timeout_s <= 0:
            raise ConfigError(f"A2A source {name}: timeout_s and connect_timeout_s must be positive")
        if side_effect not in ("read", "write"):
            raise ConfigError(f"A2A source {name}: side_effect must be 'read' or 'write'")
        self._name = name
        self.urls = tuple(u.rstrip("/") for u in urls)
        self.headers = dict(headers or {})
        self.credential = CredentialRef(name=credential) if isinstance(credential, str) else credential
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.side_effect: SideEffect = side_effect
        self.approval = approval
        self.owner = owner or name
        self.connect_timeout_s = connect_timeout_s
        self._tools: tuple[A2AAgentTool, ...] = ()
        self._clients: dict[str, Client] = {}
        self._http: httpx.AsyncClient | None = None

    @property
    def name(self) -> str:
        """The source's name."""
        return self._name

    @property
    def tools(self) -> Sequence[A2AAgentTool]:
        """One tool per agent whose card was read; empty before :meth:`start`."""
        return self._tools

    async def start(self) -> None:
        """Read every agent's card and build its tool.

        Raises:
            MissingExtraError: the ``a2a`` extra is not installed.
            ToolUnavailableError: a card cannot be fetched or read; the message says what to check.
        """
        try:
            await self.refresh()
        except BaseException:
            await self.aclose()
            raise

    async def refresh(self) -> None:
        """Read the cards again (an agent may have changed its name, description or endpoint).

        Raises:
            ToolUnavailableError: a card cannot be fetched or read; the previous tools stay.
        """
        sdk = _sdk()
        if self._http is None:
            timeout = httpx.Timeout(self.connect_timeout_s, read=self.timeout_s)
            self._http = httpx.AsyncClient(headers=self.headers, timeout=timeout, follow_redirects=True)
        factory = sdk.ClientFactory(sdk.ClientConfig(httpx_client=self._http, streaming=False))
        tools: dict[str, A2AAgentTool] = {}
        clients: dict[str, Client] = {}
        for url in self.urls:
            card = await self._card(url)
            try:
                client = factory.create(card)
            except ValueError as exc:
                raise ToolUnavailableError(
                    f"A2A agent at {_where(url)} offers no transport this client speaks ({exc}); it must offer JSON-RPC"
                ) from None
            tool = self._tool(url, card)
            if tool.name in tools:
                logger.warning("source=<%s>, tool=<%s> | skipped: two agents have this name", self._name, tool.name)
                continue
            tools[tool.name] = tool
            clients[tool.name] = client
        self._tools, self._clients = tuple(tools.values()), clients
        logger.info("source=<%s>, tools=<%d> | a2a agents loaded", self._name, len(self._tools))

    async def aclose(self) -> None:
        """Close the HTTP connections; idempotent."""
        self._clients = {}
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def _card(self, url: str) -> AgentCard:
        sdk = _sdk()
        assert self._http is not None
        try:
            return await sdk.A2ACardResolver(self._http, url).get_agent_card(
                http_kwargs={"timeout": self.connect_timeout_s}
            )
        except sdk.AgentCardResolutionError as exc:
            status = f" (HTTP {exc.status_code})" if exc.status_code else ""
            raise ToolUnavailableError(
                f"cannot read the agent card of A2A agent at {_where(url)}{status}; check that the agent is "
                "running and that the url is its base URL (the card is at <url>/.well-known/agent-card.json)",
                retryable=True,
            ) from None

    def _tool(self, url: str, card: AgentCard) -> A2AAgentTool:
        name = self.prefix + _safe_name(card.name or urlsplit(url).path.rsplit("/", 1)[-1] or "agent")
        return A2AAgentTool(
            name=name[:64],
            description=_description(card),
            parameters=dict(_PARAMETERS),
            side_effect=self.side_effect,
            timeout_s=self.timeout_s,
            credentials=(self.credential,) if self.credential is not None else (),
            needs_approval=self.approval,
            owner=self.owner,
            url=url,
            agent_name=card.name,
            _caller=self._call,
        )

    async def _call(self, tool: A2AAgentTool, arguments: dict[str, Any], context: CallContext) -> Any:
        sdk = _sdk()
        client = self._clients.get(tool.name)
        if client is None:
            raise ToolUnavailableError(f"A2A source {self._name} is closed; start it again before calling {tool.name}")
        headers: dict[str, str] = {}
        if self.credential is not None:
            value = context.credentials.get(self.credential.name)
            if value is None:
                raise CredentialError(
                    f"tool {tool.name} declares credential {self.credential.name} but the call carries none; "
                    "run the tool through the gateway with a credential provider"
                )
            headers["Authorization"] = f"Bearer {value}"
        headers.update(current_trace_context() or {})  # the agent's spans join the turn's trace (W3C headers)
        timeout_s = tool.timeout_s or self.timeout_s
        message = sdk.Message(
            role=sdk.Role.ROLE_USER,
            message_id=_stable_id(context.idempotency_key, tool.url),
            context_id=_stable_id(context.session_id, tool.url),
            parts=[sdk.Part(text=str(arguments["request"]))],
        )
        call = sdk.ClientCallContext(timeout=timeout_s, service_parameters=headers or None)
        try:
            async with asyncio.timeout(timeout_s + _TIMEOUT_GRACE_S):
                last: StreamResponse | None = None
                async for response in client.send_message(sdk.SendMessageRequest(message=message), context=call):
                    last = response
                if last is not None and last.HasField("task"):
                    return await self._task_result(tool, client, last.task, call)
                if last is None or not last.HasField("message"):
                    raise ToolError(f"A2A agent {tool.agent_name} answered with neither a message nor a task")
                return _parts_text(last.message.parts)
        except (TimeoutError, sdk.A2AClientTimeoutError):
            raise ToolTimeoutError(
                f"A2A agent {tool.agent_name} ({tool.name}) did not answer within {timeout_s:g} s; "
                "try again later or with a smaller request"
            ) from None
        except sdk.A2AError as exc:
            raise _call_error(tool, exc, sdk) from None

    async def _task_result(self, tool: A2AAgentTool, client: Client, task: Task, call: Any) -> str:
        """The answer of a task, waiting (polling) while the agent still works on it."""
        sdk = _sdk()
        while task.status.state in (sdk.TaskState.TASK_STATE_SUBMITTED, sdk.TaskState.TASK_STATE_WORKING):
            await asyncio.sleep(_POLL_S)
            task = await client.get_task(sdk.GetTaskRequest(id=task.id), context=call)
        status_text = _parts_text(task.status.message.parts) if task.status.HasField("message") else ""
        state = task.status.state
        if state == sdk.TaskState.TASK_STATE_COMPLETED:
            answers = [_parts_text(artifact.parts) for artifact in task.artifacts]
            return "\n".join(a for a in answers if a) or status_text
        if state in (sdk.TaskState.TASK_STATE_INPUT_REQUIRED, sdk.TaskState.TASK_STATE_AUTH_REQUIRED):
            return f"The agent needs more input before it can go on: {status_text or '(no question given)'}"
        outcome = sdk.TaskState.Name(state).removeprefix("TASK_STATE_").lower()
        raise ToolError(f"A2A agent {tool.agent_name} ended the task {outcome}: {status_text or 'no reason given'}")


def _call_error(tool: A2AAgentTool, exc: Any, sdk: Any) -> ToolError:
    """An ``a2a-sdk`` client error as the gateway's error, saying whether trying again may help."""
    cause = exc.__cause__
    if isinstance(cause, httpx.HTTPStatusError):
        status = cause.response.status_code
        if status in (401, 403):
            return ToolError(
                f"A2A agent {tool.agent_name} refused the call (HTTP {status}); check the credential or headers "
                "the A2A source sends"
            )
        if status == 429 or status >= 500:
            return ToolUnavailableError(
                f"A2A agent {tool.agent_name} is unavailable (HTTP {status}); try again later", retryable=True
            )
        return ToolError(f"A2A agent {tool.agent_name} rejected the call (HTTP {status})")
    if isinstance(cause, httpx.RequestError):
        return ToolUnavailableError(
            f"cannot reach A2A agent {tool.agent_name} at {_where(tool.url)} ({type(cause).__name__}); "
            "check that it is running",
            retryable=isinstance(cause, httpx.ConnectError),
        )
    if isinstance(exc, sdk.InternalError):
        return ToolUnavailableError(
            f"A2A agent {tool.agent_name} failed while answering ({exc.message}); try again later",
            retryable=tool.side_effect == "read",  # repeating a write might do it twice
        )
    return ToolError(f"A2A agent {tool.agent_name} rejected the call: {exc.message}")


def _parts_text(parts: Sequence[Part]) -> str:
    """Text parts as they are, data parts as JSON, files summarised in brackets."""
    texts: list[str] = []
    for part in parts:
        kind = part.WhichOneof("content")
        if kind == "text":
            texts.append(part.text)
        elif kind == "data":
            texts.extend(json.dumps(data, ensure_ascii=False) for data in _sdk().get_data_parts([part]))
        elif kind is not None:
            texts.append(f"[file {part.filename or part.media_type or kind}]")
    return "\n".join(texts)


def _description(card: AgentCard) -> str:
    text = card.description.strip()
    skills = [f"{s.name}: {s.description}".strip(": ") for s in card.skills if s.name or s.description]
    if skills:
        text += ("\n" if text else "") + "Skills: " + "; ".join(skills)
    if len(text) > _DESCRIPTION_CHARS:
        text = text[: _DESCRIPTION_CHARS - 3] + "..."
    return text or f"The A2A agent {card.name}."


def _safe_name(name: str) -> str:
    safe = _UNSAFE.sub("_", name).strip("_") or "agent"
    if not _TOOL_NAME.fullmatch(safe[:64]):
        safe = "_" + safe
    return safe[:64]


def _stable_id(value: str, url: str) -> str:
    """An id derived from ``value`` and the agent, revealing neither (botfactory ids stay inside)."""
    return hashlib.sha256(f"{url}\n{value}".encode()).hexdigest()[:32]


def _where(url: str) -> str:
    parts = urlsplit(url)  # without query or user info: they may carry tokens
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class _Sdk:
    """The ``a2a-sdk`` names this module uses, imported on first use so botfactory works without the extra."""

    def __init__(self) -> None:
        from a2a import client, helpers, types
        from a2a.utils import errors

        self.A2ACardResolver = client.A2ACardResolver
        self.AgentCardResolutionError = client.AgentCardResolutionError
        self.A2AClientTimeoutError = client.A2AClientTimeoutError
        self.ClientCallContext = client.ClientCallContext
        self.ClientConfig = client.ClientConfig
        self.ClientFactory = client.ClientFactory
        self.A2AError = errors.A2AError
        self.InternalError = errors.InternalError
        self.get_data_parts = helpers.get_data_parts
        self.GetTaskRequest = types.GetTaskRequest
        self.Message = types.Message
        self.Part = types.Part
        self.Role = types.Role
        self.SendMessageRequest = types.SendMessageRequest
        self.TaskState = types.TaskState


_loaded: list[_Sdk] = []


def _sdk() -> _Sdk:
    if not _loaded:
        try:
            _loaded.append(_Sdk())
        except ImportError:
            raise MissingExtraError("a2a", "A2A agents as tools") from None
    return _loaded[0]
