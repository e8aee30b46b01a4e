"""Shared by the multi-process and chaos tests: worker processes to start and kill, and the checks on what they did.

The checks read the tables directly, so they judge what every process wrote, whichever process wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import sqlalchemy as sa
from workerproc import settings_for, worker_bots

from botfactory.agents import Engine
from botfactory.runtime import RuntimeStack, start_runtime
from botfactory.store import Store
from botfactory.store.schema import inbox, messages, outbox, steps, turns
from botfactory.testing import scripted_inference

WORKERPROC: Final = Path(__file__).with_name("workerproc.py")
_MAX_PROBLEMS: Final = 25
WORKERS_SHOWN: Final = 6


@dataclass(kw_only=True)
class WorkerProcess:
    """One started ``workerproc.py``."""

    number: int
    popen: subprocess.Popen[bytes]
    ready_file: Path
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def ready(self) -> bool:
        """Started and claiming work."""
        return self.popen.poll() is None and self.ready_file.exists()


@contextlib.asynccontextmanager
async def enqueuing_runtime(store: Store, url: str) -> AsyncIterator[RuntimeStack]:
    """The test process's runtime: it enqueues and reads; the worker processes run the turns."""
    stack = await start_runtime(
        settings_for(url),
        store=store,
        engine=Engine(scripted_inference({})),
        bots=worker_bots(),
        run_worker=False,
        listen=True,
    )
    try:
        yield stack
    finally:
        await stack.aclose(grace_s=0)


@dataclass(kw_only=True)
class WorkerPool:
    """Worker processes on one database, started from this test process.

    Args:
        url: The database; its schema must be current (open a ``Store`` on it first).
        directory: Where each worker's log and ready file go.
        args: Further ``workerproc.py`` options, e.g. ``["--lease-s", "1"]``.
    """

    url: str
    directory: Path
    args: Sequence[str] = ()
    started: list[WorkerProcess] = field(default_factory=list)
    kills: int = 0

    @property
    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.popen.poll() is None]

    def spawn(self) -> WorkerProcess:
        """Start one more worker process."""
        number = len(self.started)
        self.directory.mkdir(parents=True, exist_ok=True)
        ready_file = self.directory / f"worker-{number}.ready"
        log_path = self.directory / f"worker-{number}.log"
        log = log_path.open("wb")
        env = {**os.environ, "BOTFACTORY_HOME": str(self.directory / "home"), "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, str(WORKERPROC), "--db", self.url, "--ready-file", str(ready_file), *self.args]
        popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        worker = WorkerProcess(number=number, popen=popen, ready_file=ready_file, log_path=log_path, log=log)
        self.started.append(worker)
        return worker

    def crashed(self) -> list[WorkerProcess]:
        """Workers that exited on their own (neither killed nor stopped by the test)."""
        return [w for w in self.started if w.popen.poll() not in (None, -signal.SIGKILL)]

    async def wait_ready(self, *, within: float = 60.0) -> None:
        """Wait until every live worker claims work."""
        async with asyncio.timeout(within):
            while not all(w.ready for w in self.alive):
                if crashed := self.crashed():
                    raise AssertionError(f"worker {crashed[0].number} exited early:\n{self.log_tail(crashed[0])}")
                await asyncio.sleep(0.05)

    def kill(self, worker: WorkerProcess) -> None:
        """SIGKILL: no shutdown, no lease released, writes cut wherever they were."""
        worker.popen.kill()
        worker.popen.wait()
        self.kills += 1

    async def stop(self, *, within: float = 30.0) -> dict[int, int | None]:
        """SIGTERM every live worker once it is up, and wait for them; returns each one's exit status by number.

        A replacement still importing botfactory has no signal handler yet and would die of the signal: that
        says nothing about graceful shutdown (it holds no lease), so it is given the time to start first.
        """
        await self.wait_ready()
        alive = self.alive
        for worker in alive:
            worker.popen.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while any(w.popen.poll() is None for w in alive) and loop.time() < deadline:  # noqa: ASYNC110 - child processes
            await asyncio.sleep(0.05)
        return {w.number: w.popen.poll() for w in alive}

    def close(self) -> None:
        """Kill whatever still runs (after a failure) and close the logs."""
        for worker in self.started:
            if worker.popen.poll() is None:
                worker.popen.kill()
            worker.popen.wait()
            worker.log.close()

    def log_tail(self, worker: WorkerProcess, lines: int = 30) -> str:
        worker.log.flush()
        return "\n".join(worker.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def drain(self, read: Any, total: int, *, within: float) -> Counter[str]:
        """:func:`wait_drained`, with the workers' latest log lines when it fails."""
        try:
            return await wait_drained(read, total, within=within)
        except AssertionError as exc:
            tails = "\n".join(f"--- worker {w.number}:\n{self.log_tail(w, 15)}" for w in self.started[-WORKERS_SHOWN:])
            raise AssertionError(f"{exc}\n{tails}") from None

    def errors(self) -> list[str]:
        """Log lines of every worker at ERROR level or worse (tracebacks included)."""
        found: list[str] = []
        for worker in self.started:
            text = worker.log_path.read_text(errors="replace") if worker.log_path.exists() else ""
            found.extend(f"worker {worker.number}: {line}" for line in text.splitlines() if " ERROR " in line)
        return found

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def inbox_counts(connection: sa.Connection) -> Counter[str]:
    """Inbound messages by status."""
    rows = connection.execute(sa.select(inbox.c.status, sa.func.count()).group_by(inbox.c.status)).all()
    return Counter({row[0]: int(row[1]) for row in rows})


async def wait_drained(read: Any, total: int, *, within: float) -> Counter[str]:
    """Wait until all ``total`` messages are settled (none pending or running); returns the counts by status.

    Args:
        read: ``RuntimeStore.writer.read``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        counts: Counter[str] = await read(inbox_counts)
        settled = sum(n for status, n in counts.items() if status not in ("pending", "running"))
        if settled >= total:
            return counts
        if loop.time() > deadline:
            raise AssertionError(f"after {within:g} s, {total - settled} of {total} messages are unanswered: {counts}")
        await asyncio.sleep(0.1)


async def deadlocks(store: Store) -> int | None:
    """How many deadlocks PostgreSQL has detected in this database so far; ``None`` on SQLite.

    Each one stalls its transactions for ``deadlock_timeout`` (1 s by default) before one of them fails.
    """
    if store.engine.dialect.name != "postgresql":
        return None
    async with store.engine.connect() as connection:
        query = sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(await connection.scalar(query) or 0)


@dataclass(kw_only=True)
class Tables:
    """The rows of the runtime's tables for a set of sessions."""

    inbox: list[sa.RowMapping]
    messages: list[sa.RowMapping]
    turns: list[sa.RowMapping]
    steps: list[sa.RowMapping]
    outbox: list[sa.RowMapping]

    @classmethod
    def read(cls, connection: sa.Connection, session_ids: Sequence[str]) -> Tables:
        def rows(query: sa.Select[Any]) -> list[sa.RowMapping]:
            return list(connection.execute(query).mappings().all())

        return cls(
            inbox=rows(sa.select(inbox).where(inbox.c.session_id.in_(session_ids))),
            messages=rows(sa.select(messages).where(messages.c.session_id.in_(session_ids)).order_by(messages.c.seq)),
            turns=rows(sa.select(turns).where(turns.c.session_id.in_(session_ids))),
            steps=rows(
                sa.select(steps, turns.c.session_id)
                .select_from(steps.join(turns, turns.c.id == steps.c.turn_id))
                .where(turns.c.session_id.in_(session_ids))
                .order_by(steps.c.turn_id, steps.c.position)
            ),
            outbox=rows(sa.select(outbox).where(outbox.c.session_id.in_(session_ids))),
        )


def _by(rows: Sequence[sa.RowMapping], key: str) -> dict[Any, list[sa.RowMapping]]:
    grouped: dict[Any, list[sa.RowMapping]] = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    return grouped


def answered_once_in_order(tables: Tables, sent: Mapping[str, Sequence[str]]) -> list[str]:
    """Every way the sessions' records break "each message answered once, in arrival order, one turn at a time".

    Args:
        sent: The texts sent to each session, in the order they were enqueued. Each reply must be ``echo: <text>``.

    Returns:
        Descriptions of the violations (at most a few dozen), empty when there are none.
    """
    problems: list[str] = []
    inbox_of = {row["message_id"]: row for row in tables.inbox}
    messages_by_session = _by(tables.messages, "session_id")
    turns_by_session = _by(tables.turns, "session_id")
    steps_by_turn = _by(tables.steps, "turn_id")
    outbox_by_turn = _by(tables.outbox, "turn_id")
    for session_id, texts in sent.items():
        session_messages = messages_by_session.get(session_id, [])
        users = [m for m in session_messages if m["role"] == "user"]
        replies = [m for m in session_messages if m["role"] == "assistant"]
        if [m["text"] for m in users] != list(texts):
            problems.append(f"{session_id}: the stored messages are not the {len(texts)} sent, in order")
        # Each message: done, answered by a completed turn of its own.
        answering: list[str | None] = []
        for message in users:
            item = inbox_of.get(message["id"])
            if item is None or item["status"] != "done":
                status = item["status"] if item is not None else "missing from the inbox"
                problems.append(f"{session_id}: message {message['seq']} ({message['text']!r}) is {status}")
            answering.append(item["turn_id"] if item is not None else None)
        session_turns = {t["id"]: t for t in turns_by_session.get(session_id, [])}
        for turn_id, count in Counter(answering).items():
            if turn_id is not None and count > 1:
                problems.append(f"{session_id}: turn {turn_id} answers {count} messages")
        for turn in session_turns.values():
            if turn["id"] not in answering:
                problems.append(f"{session_id}: turn {turn['id']} ({turn['status']}) answers no message")
            elif turn["status"] != "completed":
                problems.append(f"{session_id}: turn {turn['id']} is {turn['status']}: {turn['error_message']}")
        # Replies: one per turn, in arrival order of the messages they answer.
        for turn_id, count in Counter(r["turn_id"] for r in replies).items():
            if count > 1:
                problems.append(f"{session_id}: turn {turn_id} has {count} replies")
        expected = [f"echo: {text}" for text in texts]
        if [r["text"] for r in replies] != expected:
            got = [r["text"] for r in replies]
            first = next((i for i, (a, b) in enumerate(zip(got, expected, strict=False)) if a != b), None)
            problems.append(
                f"{session_id}: {len(got)} replies for {len(expected)} messages"
                + (f"; reply {first} is {got[first]!r}, expected {expected[first]!r}" if first is not None else "")
            )
        elif [r["turn_id"] for r in replies] != answering:
            problems.append(f"{session_id}: replies do not come from the turns that answer their messages")
        # One turn at a time: by start time, turns answer messages in arrival order and never overlap.
        ordered = sorted(session_turns.values(), key=lambda t: (t["started_at"], t["finished_at"] or 0))
        seq_of_turn = {item["turn_id"]: item["seq"] for item in tables.inbox if item["session_id"] == session_id}
        seqs = [seq_of_turn.get(t["id"], -1) for t in ordered]
        if seqs != sorted(seqs):
            problems.append(f"{session_id}: turns started out of arrival order: message seqs {seqs}")
        for before, after in itertools.pairwise(ordered):
            if before["finished_at"] is None or before["finished_at"] > after["started_at"]:
                problems.append(
                    f"{session_id}: turn {after['id']} started at {after['started_at']:.6f} while turn "
                    f"{before['id']} ran ({before['started_at']:.6f} to {before['finished_at']})"
                )
        for turn in ordered:
            end = turn["finished_at"] if turn["finished_at"] is not None else float("inf")
            for step in steps_by_turn.get(turn["id"], []):
                if not (turn["started_at"] <= step["started_at"] and (step["finished_at"] or 0) <= end):
                    problems.append(f"{session_id}: step {step['position']} of turn {turn['id']} ran outside it")
            # The reply went to the outbox once, in the transaction that completed the turn.
            rows = outbox_by_turn.get(turn["id"], [])
            if turn["status"] == "completed" and (len(rows) != 1 or rows[0]["text"] != turn["reply"]):
                problems.append(f"{session_id}: turn {turn['id']} has {len(rows)} outbox rows")
        session_outbox = [row for turn in ordered for row in outbox_by_turn.get(turn["id"], [])]
        if len(session_outbox) != len(texts) or any(row["status"] != "delivered" for row in session_outbox):
            statuses = Counter(row["status"] for row in session_outbox)
            problems.append(f"{session_id}: outbox rows {dict(statuses)} for {len(texts)} messages")
    return problems[:_MAX_PROBLEMS] + ([f"... {len(problems) - _MAX_PROBLEMS} more"] * (len(problems) > _MAX_PROBLEMS))


def rounds(session_ids: Sequence[str], per_session: int, text: Any) -> Iterator[list[tuple[str, str]]]:
    """``per_session`` rounds of one message to every session: ``text(session_id, n)``."""
    for n in range(per_session):
        yield [(session_id, text(session_id, n)) for session_id in session_ids]
