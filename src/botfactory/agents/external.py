"""Agents that run outside botfactory: apps that implement the AgentCore runtime contract.

Such an app serves ``POST /invocations`` (a JSON payload; the answer is JSON, or server-sent events when its handler
streams) and ``GET /ping`` (``{"status": "Healthy" | "HealthyBusy", "time_of_last_update": ...}``); apps written with
the ``bedrock-agentcore`` SDK's ``BedrockAgentCoreApp`` do. A :class:`ContractAgent` is a bot's agent (or a
sub-agent) whose every turn is one call to such an app, made by the engine as one durable step: inbox, budgets,
kill switches, cancellation and tracing still apply around it, and a turn resumed after the call completed replays
its recorded reply instead of calling the app again.

botfactory either connects to a running app (``url``) or starts it (``command``, told its port in ``$PORT``),
waits until ``/ping`` answers, and stops it when the platform stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from botfactory.agents.agent import Agent
from botfactory.agents.events import Event
from botfactory.errors import ExternalAgentBusyError, ExternalAgentError
from botfactory.observability import current_trace_context

__all__ = [
    "BOTFACTORY_SESSION_HEADER",
    "CONTRACT_REQUEST_HEADER",
    "CONTRACT_SESSION_HEADER",
    "ContractAgent",
    "ContractChunk",
    "contract_agents",
    "contract_reply_text",
    "contract_session_id",
]

logger = logging.getLogger(__name__)

CONTRACT_SESSION_HEADER: Final = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
"""The contract's session header: 33 to 256 characters chosen by the caller."""
CONTRACT_REQUEST_HEADER: Final = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
"""The contract's request id; botfactory sends the step's idempotency key (``turn_id:position``)."""
BOTFACTORY_SESSION_HEADER: Final = "X-Amzn-Bedrock-AgentCore-Runtime-Custom-Botfactory-Session-Id"
"""The botfactory session id, for the app to send as ``X-Session-Id`` to the inference endpoint (session budgets).

A ``...-Custom-`` header, so AgentCore's header allow-list (and the SDK's ``context.request_headers``) passes it."""
_BUSY: Final = "HealthyBusy"
_REPLY_KEYS: Final = ("result", "response", "output", "answer", "text", "message", "content")
_EVENT_DATA_CHARS: Final = 300
_OUTPUT_LINES: Final = 40
_MAX_BUSY_DELAY_S: Final = 2.0
_ERROR_BODY_CHARS: Final = 300

ChunkHandler = Callable[[str, str], Awaitable[None]]
"""Receives each streamed chunk: the text it adds to the reply (may be empty) and the chunk as JSON, shortened."""


def contract_session_id(session_id: str) -> str:
    """The contract session id botfactory sends for one of its sessions: stable, valid (67 characters), opaque."""
    return "bf-" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ContractChunk(Event):
    """A chunk an external agent app streamed while answering (its server-sent events, one by one).

    Attributes:
        text: What the chunk adds to the reply (a string chunk, or a Strands event's ``data``); may be empty.
        raw: The chunk as the app sent it, as JSON, shortened.
    """

    position: int
    text: str
    raw: str

    @property
    def kind(self) -> str:
        """``contract_chunk``."""
        return "contract_chunk"


@dataclass(frozen=True, kw_only=True)
class ContractReply:
    """What one call to ``/invocations`` produced."""

    text: str
    streamed: bool
    chunks: int


@dataclass(kw_only=True, eq=False)
class ContractAgent(Agent):
    """An agent served by an external app that implements the AgentCore runtime contract.

    Give exactly one of ``url`` (connect to a running app) and ``command`` (botfactory starts it on a free port it
    passes in ``$PORT``, on first use, and stops it when the platform stops). Each turn sends the user's message as
    ``{"prompt": ..., "user_id": ...}`` with the session header set to :func:`contract_session_id` of the botfactory
    session, so the app keeps its own conversation per session. The app's own model calls should go to botfactory's
    inference endpoint (``/v1/inference/chat/completions``), where they are metered and budgeted.

    Attributes:
        url: Base URL of a running app (``http://127.0.0.1:8080``).
        command: Program and arguments that start the app; it must listen on 127.0.0.1 at ``$PORT``.
        env: Extra environment for the started app (on top of botfactory's own).
        cwd: Working directory of the started app.
        model: Shown in listings and used to price the budget check before each call; the app picks its own models.
        timeout_s: Longest wait for the app's answer (between two streamed chunks, when it streams).
        busy_timeout_s: How long to wait while ``/ping`` says ``HealthyBusy`` before failing the attempt (retried).
        start_timeout_s: How long a started app may take to answer ``/ping``.
        stop_grace_s: After SIGTERM, how long the started app may take to exit before SIGKILL.
    """

    instructions: str = ""
    model: str = "external"
    url: str | None = None
    command: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | Path | None = None
    timeout_s: float = 300.0
    busy_timeout_s: float = 60.0
    start_timeout_s: float = 60.0
    stop_grace_s: float = 5.0
    _process: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _base_url: str | None = field(default=None, init=False, repr=False)
    _client: httpx.AsyncClient | None = field(default=None, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)
    _reader: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _output: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_OUTPUT_LINES), init=False, repr=False
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.url is None) == (self.command is None):
            raise ValueError(f"contract agent {self.name!r}: give exactly one of url= and command=")
        if self.command is not None and (isinstance(self.command, str) or not self.command):
            raise ValueError(f"contract agent {self.name!r}: command must be a non-empty list of strings")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"contract agent {self.name!r}: url must start with http:// or https://")
        for name in ("timeout_s", "busy_timeout_s", "start_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"contract agent {self.name!r}: {name} must be positive")
        if self.tools:
            raise ValueError(f"contract agent {self.name!r}: its tools live in the app; give it none here")

    @property
    def process_id(self) -> int | None:
        """The started app's process id while it runs."""
        if self._process is None or self._process.returncode is not None:
            return None
        return self._process.pid

    async def invoke(
        self,
        *,
        session_id: str,
        prompt: str,
        user_id: str | None,
        request_id: str,
        on_chunk: ChunkHandler | None = None,
    ) -> ContractReply:
        """Send one message to the app and return its reply, passing streamed chunks to ``on_chunk``.

        Waits first while ``/ping`` answers ``HealthyBusy``. Cancelling the call closes the connection, which the
        app sees as the client going away.

        Raises:
            ExternalAgentError: the app could not be started or reached, failed, or answered with something
                unusable (retryable).
            ExternalAgentBusyError: it stayed busy for longer than ``busy_timeout_s``.
        """
        base = await self.start()
        client = self._http()
        await self._wait_until_free(client, base)
        headers = {
            CONTRACT_SESSION_HEADER: contract_session_id(session_id),
            CONTRACT_REQUEST_HEADER: request_id,
            BOTFACTORY_SESSION_HEADER: session_id,
            "accept": "text/event-stream, application/json",
            **(current_trace_context() or {}),  # the app's spans (the SDK reads traceparent) join the turn's trace
        }
        payload: dict[str, Any] = {"prompt": prompt}
        if user_id is not None:
            payload["user_id"] = user_id
        try:
            async with client.stream("POST", f"{base}/invocations", json=payload, headers=headers) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode("utf-8", "replace")
                    raise ExternalAgentError(
                        f"the {self.name} agent app answered {response.status_code} to /invocations: "
                        f"{_short(body, _ERROR_BODY_CHARS)}"
                    )
                if response.headers.get("content-type", "").startswith("text/event-stream"):
                    return await self._read_stream(response, on_chunk)
                try:
                    data = json.loads(await response.aread())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ExternalAgentError(
                        f"the {self.name} agent app answered /invocations with something that is not JSON"
                    ) from None
                return ContractReply(text=contract_reply_text(data), streamed=False, chunks=0)
        except httpx.TimeoutException:
            raise ExternalAgentError(
                f"the {self.name} agent app did not answer within {self.timeout_s:g} s; "
                "raise its timeout_s if it needs longer"
            ) from None
        except httpx.TransportError as exc:
            raise ExternalAgentError(
                f"cannot reach the {self.name} agent app at {base} ({type(exc).__name__}); is it running?"
            ) from None

    async def start(self) -> str:
        """Start the app if botfactory runs it and it is not running (again, after a crash); returns its base URL.

        Raises:
            ExternalAgentError: the app exited, or did not answer ``/ping`` within ``start_timeout_s``; the message
                ends with the app's last lines of output.
        """
        if self.url is not None:
            return self.url.rstrip("/")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._process is not None and self._process.returncode is not None:
                logger.warning(
                    "agent=<%s>, exit_status=<%s> | agent app exited; starting it again",
                    self.name,
                    self._process.returncode,
                )
                await self._reap()
            if self._process is None:
                await self._launch()
            assert self._base_url is not None
            return self._base_url

    async def aclose(self) -> None:
        """Stop the app botfactory started (SIGTERM, then SIGKILL after ``stop_grace_s``) and close connections."""
        process = self._process
        if process is not None and process.returncode is None:
            _signal_group(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_grace_s)
            except TimeoutError:
                logger.warning("agent=<%s>, pid=<%d> | agent app ignored SIGTERM; killing it", self.name, process.pid)
                _signal_group(process, signal.SIGKILL)
                await process.wait()
            logger.info("agent=<%s>, pid=<%d> | agent app stopped", self.name, process.pid)
        await self._reap()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # Internals

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout_s, connect=10.0))
        return self._client

    async def _launch(self) -> None:
        assert self.command is not None
        port = _free_port()
        env = {**os.environ, **self.env, "PORT": str(port)}
        self._output.clear()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                env=env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it stops whatever it spawned
            )
        except OSError as exc:
            raise ExternalAgentError(
                f"cannot start the {self.name} agent app ({self.command[0]}: {exc.strerror}); fix its command"
            ) from None
        self._process = process
        self._reader = asyncio.get_running_loop().create_task(self._read_output(process))
        base = f"http://127.0.0.1:{port}"
        logger.info("agent=<%s>, pid=<%d>, port=<%d> | agent app starting", self.name, process.pid, port)
        client = self._http()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        while True:
            if process.returncode is not None:
                await self._drain_output()
                message = (
                    f"the {self.name} agent app exited with status {process.returncode} before answering /ping"
                    f"{self._output_tail()}"
                )
                await self._reap()
                raise ExternalAgentError(message)
            with contextlib.suppress(httpx.TransportError, ExternalAgentError):
                await self._ping(client, base)
                break
            if loop.time() >= deadline:
                message = (
                    f"the {self.name} agent app did not answer /ping within {self.start_timeout_s:g} s"
                    f"{self._output_tail()}"
                )
                await self.aclose()
                raise ExternalAgentError(message)
            await asyncio.sleep(0.05)
        self._base_url = base
        logger.info("agent=<%s>, pid=<%d>, url=<%s> | agent app ready", self.name, process.pid, base)

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self._output.append(line)
            logger.debug("agent=<%s> | app: %s", self.name, line)

    async def _drain_output(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), 2.0)

    def _output_tail(self) -> str:
        if not self._output:
            return " (it printed nothing)"
        return "; its last output:\n" + "\n".join(self._output)

    async def _reap(self) -> None:
        if self._reader is not None:
            await self._drain_output()
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._reader = None
        self._process = None
        self._base_url = None

    async def _ping(self, client: httpx.AsyncClient, base: str) -> str:
        response = await client.get(f"{base}/ping", timeout=10.0)
        if response.status_code != 200:
            raise ExternalAgentError(f"the {self.name} agent app answered {response.status_code} to /ping")
        try:
            status = response.json().get("status")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ExternalAgentError(f"the {self.name} agent app answered /ping with something unusable") from None
        return str(status)

    async def _wait_until_free(self, client: httpx.AsyncClient, base: str) -> None:
        """Return once ``/ping`` does not say ``HealthyBusy``; back off between tries, up to ``busy_timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.busy_timeout_s
        delay = 0.05
        while True:
            try:
                status = await self._ping(client, base)
            except httpx.TransportError as exc:
                raise ExternalAgentError(
                    f"cannot reach the {self.name} agent app at {base} ({type(exc).__name__}); is it running?"
                ) from None
            if status != _BUSY:
                return
            left = deadline - loop.time()
            if left <= 0:
                raise ExternalAgentBusyError(
                    f"the {self.name} agent app stayed HealthyBusy for {self.busy_timeout_s:g} s; "
                    "the turn is retried later (raise busy_timeout_s to wait longer)"
                )
            logger.debug("agent=<%s>, retry_in_s=<%.2f> | agent app is HealthyBusy; waiting", self.name, delay)
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, _MAX_BUSY_DELAY_S)

    async def _read_stream(self, response: httpx.Response, on_chunk: ChunkHandler | None) -> ContractReply:
        pieces: list[str] = []
        last: Any = None
        chunks = 0
        async for data in _sse_data(response):
            chunk = _decode(data)
            if isinstance(chunk, dict) and "error" in chunk and "error_type" in chunk:
                raise ExternalAgentError(
                    f"the {self.name} agent app failed while streaming ({_short(str(chunk['error_type']), 80)})"
                )
            chunks += 1
            text = _chunk_text(chunk)
            pieces.append(text)
            last = chunk
            if on_chunk is not None:
                await on_chunk(text, _event_data(chunk))
        reply = "".join(pieces)
        if not reply and last is not None:
            reply = contract_reply_text(last)
        return ContractReply(text=reply, streamed=True, chunks=chunks)


def contract_reply_text(data: Any) -> str:
    """The reply text in an app's JSON answer.

    A string is the reply. In an object the first of ``result``, ``response``, ``output``, ``answer``, ``text``,
    ``message`` and ``content`` is used (so ``{"result": agent_result.message}``, the SDK samples' shape with a
    Strands message, gives its text); a list is the concatenation of its items' texts. Anything else is shown as JSON.
    """
    if isinstance(data, str):
        return data
    if isinstance(data, dict):
        for key in _REPLY_KEYS:
            if key in data:
                return contract_reply_text(data[key])
    if isinstance(data, list):
        return "".join(contract_reply_text(item) for item in data)
    return json.dumps(data, ensure_ascii=False)


def _chunk_text(chunk: Any) -> str:
    """The text a streamed chunk adds: a string chunk, or the text delta (``data``) of a Strands stream event."""
    if isinstance(chunk, str):
        return chunk
    if isinstance(chunk, dict) and isinstance(chunk.get("data"), str):
        return str(chunk["data"])
    return ""


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined with newlines)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _decode(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return data


def _event_data(chunk: Any) -> str:
    """A chunk as JSON for an event, shortened."""
    return _short(json.dumps(chunk, ensure_ascii=False, default=str), _EVENT_DATA_CHARS)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def contract_agents(agents: Iterable[Agent]) -> list[ContractAgent]:
    """Every :class:`ContractAgent` among ``agents`` and their sub-agents, each once (to stop their apps)."""
    found: dict[int, ContractAgent] = {}
    pending = list(agents)
    seen: set[int] = set()
    while pending:
        agent = pending.pop()
        if id(agent) in seen:
            continue
        seen.add(id(agent))
        if isinstance(agent, ContractAgent):
            found[id(agent)] = agent
        pending.extend(t for t in agent.tools if isinstance(t, Agent))
    return list(found.values())
