"""Run and supervise a local llama.cpp server (via the ``xllamacpp`` wheel) in a child process.

Each model gets its own child process serving llama.cpp's OpenAI-compatible API on 127.0.0.1, so a
crash in native code takes down one model, not the platform. A supervision task restarts a child that
died, with exponential backoff, and gives up after repeated quick failures. The child dies with its
parent (see ``_llama_child``). Talk to the server with :meth:`LocalModelServer.chat_model`, or any
OpenAI client pointed at :attr:`LocalModelServer.base_url`. Uses asyncio.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import httpx

from botfactory.errors import ConfigError, ModelUnavailableError
from botfactory.inference.base import ModelProfile
from botfactory.inference.openai import OpenAIChatModel, OpenAIProvider

__all__ = ["LOCAL_PROFILE", "LocalModelServer"]

logger = logging.getLogger(__name__)

LOCAL_PROFILE = ModelProfile(native_tool_calling=False, structured_output=True)
"""Small local models: the ``tools`` field yields no parseable calls; constrained JSON is reliable (MODELS.md)."""

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_LOG_TAIL = 40
_CHILD_SCRIPT = Path(__file__).with_name("_llama_child.py")


class LocalModelServer:
    """One llama.cpp server for one GGUF file, in a supervised child process bound to loopback.

    Args:
        model_path: A verified GGUF file (see :func:`botfactory.inference.install.ensure_model_file`).
        port: TCP port on ``host``.
        context_size: Context window in tokens.
        threads: CPU threads for prompt processing and generation.
        host: Loopback address to bind; anything else is refused (the server has no authentication).
        start_timeout_s: How long loading the model may take before :meth:`start` fails.
        max_quick_failures: Consecutive restarts that fail, or die within ``quick_failure_s`` of being
            healthy, before the supervisor gives up.
        quick_failure_s: A child that served at least this long resets the failure count.
        restart_backoff_s: First delay before a restart; doubles per consecutive quick failure.
        max_restart_backoff_s: Upper bound of that delay.
        stop_grace_s: How long :meth:`stop` waits after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        port: int,
        context_size: int,
        threads: int,
        host: str = "127.0.0.1",
        start_timeout_s: float = 180.0,
        max_quick_failures: int = 5,
        quick_failure_s: float = 60.0,
        restart_backoff_s: float = 1.0,
        max_restart_backoff_s: float = 30.0,
        stop_grace_s: float = 5.0,
    ) -> None:
        if host not in _LOOPBACK:
            raise ConfigError(f"local model servers bind to loopback only (got host '{host}'); use 127.0.0.1")
        self.model_path = model_path
        self.port = port
        self.context_size = context_size
        self.threads = threads
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.max_quick_failures = max_quick_failures
        self.quick_failure_s = quick_failure_s
        self.restart_backoff_s = restart_backoff_s
        self.max_restart_backoff_s = max_restart_backoff_s
        self.stop_grace_s = stop_grace_s
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._log_tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
        self._healthy_since = 0.0
        self._restarts = 0
        self._stopping = False
        self._failed = False
        self._ready = asyncio.Event()
        self._start_lock = asyncio.Lock()

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, e.g. ``http://127.0.0.1:8091/v1``."""
        return f"{self._root_url}/v1"

    @property
    def _root_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the current child, or ``None`` when none is running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def restarts(self) -> int:
        """How many times the supervisor has restarted the child since :meth:`start`."""
        return self._restarts

    @property
    def failed(self) -> bool:
        """The supervisor gave up after repeated quick failures; :meth:`start` again to retry."""
        return self._failed

    def log_tail(self, lines: int = 10) -> list[str]:
        """The child's last log lines (llama.cpp's own log), newest last."""
        return list(self._log_tail)[-lines:]

    async def start(self) -> None:
        """Spawn the child and wait until ``GET /health`` answers 200; then supervise it.

        Idempotent while running.

        Raises:
            ModelUnavailableError: the model did not load within ``start_timeout_s`` or the child exited;
                the message carries the child's last log lines.
        """
        async with self._start_lock:
            if self._supervisor is not None and not self._supervisor.done():
                return
            self._stopping = False
            self._failed = False
            self._restarts = 0
            await self._launch()
            self._supervisor = asyncio.create_task(self._supervise(), name=f"llama-supervisor:{self.port}")

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Wait until the child is healthy (for instance after a restart).

        Raises:
            ModelUnavailableError: not healthy within ``timeout_s``, or the supervisor gave up.
        """
        if self._failed:
            raise self._gave_up_error()
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            raise ModelUnavailableError(
                f"local model server on port {self.port} not ready after {timeout_s:.0f}s; see its log lines"
            ) from None
        if self._failed:
            raise self._gave_up_error()

    async def stop(self) -> None:
        """Stop supervising and end the child: SIGTERM, then SIGKILL after ``stop_grace_s``. Idempotent."""
        self._stopping = True
        self._ready.clear()
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.wait({supervisor})
        await self._end_child()

    def chat_model(
        self, name: str, *, timeout_s: float = 300.0, max_retries: int = 3, profile: ModelProfile = LOCAL_PROFILE
    ) -> OpenAIChatModel:
        """An :class:`OpenAIChatModel` talking to this server, with llama.cpp's prompt cache requested.

        Between retries it also waits for a restarting child to become healthy again, so a call made
        while the supervisor restarts a crashed server succeeds instead of exhausting its retries.
        The model owns its HTTP client: close it with ``await model.aclose()``; the server stays up.
        """
        provider = OpenAIProvider(
            self.base_url,
            None,
            timeout_s=timeout_s,
            max_retries=max_retries,
            trust_env=False,
            sleep=self._pause_before_retry,
        )
        return OpenAIChatModel(name, provider, profile=profile, extra_body={"cache_prompt": True})

    async def _pause_before_retry(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        with contextlib.suppress(ModelUnavailableError):
            await self.wait_ready(self.start_timeout_s)

    async def _launch(self) -> None:
        """Spawn a child and wait for it to become healthy; on failure the child is gone and this raises."""
        self._log_tail.clear()
        proc = await asyncio.create_subprocess_exec(
            *self._command(),
            stdin=asyncio.subprocess.PIPE,  # the child exits when this pipe closes, i.e. when we die
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl+C reaches us, and we stop the child in order
        )
        self._proc = proc
        self._reader = asyncio.create_task(self._read_log(proc), name=f"llama-log:{self.port}")
        logger.info(
            "port=<%d>, pid=<%d>, model=<%s> | local model server starting", self.port, proc.pid, self.model_path
        )
        try:
            await self._wait_healthy(proc)
        except BaseException:
            await self._end_child()
            raise
        self._healthy_since = time.monotonic()
        self._ready.set()
        logger.info("port=<%d>, pid=<%d> | local model server healthy", self.port, proc.pid)

    def _command(self) -> list[str]:
        """The child's command line (a seam for tests, which substitute a fake server)."""
        return [
            sys.executable,
            "-I",  # isolated: the child imports only the standard library and xllamacpp
            str(_CHILD_SCRIPT),
            "--model",
            str(self.model_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--ctx",
            str(self.context_size),
            "--threads",
            str(self.threads),
            "--parent-pid",
            str(os.getpid()),
        ]

    async def _wait_healthy(self, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        url = f"{self._root_url}/health"
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            while True:
                if proc.returncode is not None:
                    raise self._start_error(f"exited with status {proc.returncode} while loading")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise self._start_error(f"was not healthy after {self.start_timeout_s:.0f}s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.25):
                        await proc.wait()

    def _start_error(self, what: str) -> ModelUnavailableError:
        tail = " | ".join(self.log_tail(8)) or "no output"
        return ModelUnavailableError(
            f"local model server for {self.model_path.name} on port {self.port} {what}; last log lines: {tail}"
        )

    def _gave_up_error(self) -> ModelUnavailableError:
        return ModelUnavailableError(
            f"local model server for {self.model_path.name} on port {self.port} kept crashing and was given up "
            f"after {self._restarts} restarts; see the logs, then restart botfactory"
        )

    async def _read_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            text = line.decode("utf-8", errors="replace").rstrip()
            self._log_tail.append(text)
            logger.debug("port=<%d>, pid=<%d> | %s", self.port, proc.pid, text)

    async def _end_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(self.stop_grace_s):
                    await proc.wait()
            except TimeoutError:
                logger.warning("port=<%d>, pid=<%d> | child ignored SIGTERM; killing it", self.port, proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            logger.info("port=<%d>, pid=<%d> | local model server stopped", self.port, proc.pid)
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                async with asyncio.timeout(1.0):
                    await reader
            except TimeoutError:
                pass

    async def _supervise(self) -> None:
        quick_failures = 0
        while True:
            proc = self._proc
            if proc is None:
                return
            status = await proc.wait()
            self._ready.clear()
            if self._stopping:
                return
            served_s = time.monotonic() - self._healthy_since
            quick_failures = quick_failures + 1 if served_s < self.quick_failure_s else 1
            logger.warning(
                "port=<%d>, pid=<%d>, status=<%s>, served_s=<%.1f> | local model server died; last log: %s",
                self.port,
                proc.pid,
                status,
                served_s,
                " | ".join(self.log_tail(5)),
            )
            await self._end_child()
            while True:
                if quick_failures > self.max_quick_failures:
                    self._failed = True
                    self._ready.set()  # wake waiters so they see the failure
                    logger.error(
                        "port=<%d>, restarts=<%d> | local model server keeps failing; giving up",
                        self.port,
                        self._restarts,
                    )
                    return
                delay = min(self.restart_backoff_s * 2 ** (quick_failures - 1), self.max_restart_backoff_s)
                logger.warning("port=<%d>, delay_s=<%.1f> | restarting local model server", self.port, delay)
                await asyncio.sleep(delay)
                self._restarts += 1
                try:
                    await self._launch()
                    break
                except ModelUnavailableError as exc:
                    logger.warning("port=<%d>, restarts=<%d> | restart failed: %s", self.port, self._restarts, exc)
                    quick_failures += 1
