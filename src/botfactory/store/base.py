"""The store: sessions, their messages, turns and the steps of each turn, on SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Final, Self, get_args

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botfactory.errors import InvalidInputError, NotFoundError, SessionNotFoundError, StoreError
from botfactory.messages import Role
from botfactory.store import migrate as migrations
from botfactory.store.engine import begin_write, create_engine, database_error, reading, writing
from botfactory.store.ids import new_id
from botfactory.store.records import (
    FinishedTurnStatus,
    MessageRecord,
    SessionRecord,
    StepRecord,
    TurnRecord,
    message_from_row,
    session_from_row,
    step_from_row,
    turn_from_row,
)
from botfactory.store.schema import messages, sessions, steps, turns

__all__ = ["Clock", "Store"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
"""Returns the current time in UNIX epoch seconds; :func:`time.time` unless a test injects one."""

# The most steps one list_session_steps call returns (100 turns of a busy bot use a few thousand).
_MAX_SESSION_STEPS: Final = 20_000
_ROLES: Final = frozenset(get_args(Role))
_FINISHED: Final = frozenset(get_args(FinishedTurnStatus))
# INSERT ... ON CONFLICT DO NOTHING is spelled the same on both, but lives in each dialect.
_INSERT_OR_IGNORE: Final[dict[str, Callable[[sa.Table], postgresql.Insert | sqlite.Insert]]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def _check_key(what: str, value: str, column: sa.Column[str]) -> None:
    # SQLite would store an over-long key that PostgreSQL rejects; fail the same way on both.
    limit = column.type.length if isinstance(column.type, sa.String) else None
    if not value or (limit is not None and len(value) > limit):
        raise InvalidInputError(f"{what} must be 1 to {limit} characters, got {len(value)}")


class Store:
    """Async access to botfactory's database; one instance per process, shared by all tasks.

    Open it with :meth:`open` and close it with :meth:`close` (or use ``async with``). Every
    method runs in its own transaction, so each call is atomic on its own.

    Attributes:
        engine: The SQLAlchemy async engine, for packages that keep their own tables here.
        dialect_name: ``"sqlite"`` or ``"postgresql"``.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock = time.time) -> None:
        """Wrap an engine made by :func:`botfactory.store.engine.create_engine`; prefer :meth:`open`."""
        self.engine = engine
        self.dialect_name: str = engine.dialect.name
        self._clock = clock
        # SQLite admits one writer at a time and makes the others poll with growing sleeps;
        # queueing this process's writers here instead keeps concurrent writes fast. Other
        # processes still wait on SQLite's busy timeout.
        self._write_queue = asyncio.Lock() if self.dialect_name == "sqlite" else contextlib.nullcontext()

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, clock: Clock = time.time) -> Self:
        """Connect to the database at ``url`` and bring its schema up to date.

        Args:
            url: ``sqlite:///path/to/file.db`` (the directory is created) or ``postgresql://...``.
            migrate: Apply pending migrations. With ``False`` the schema must already be current.
            clock: Source of timestamps; tests pass a fake one.

        Raises:
            ConfigError: The URL is invalid or names an unsupported database.
            MissingExtraError: PostgreSQL was asked for but psycopg is not installed.
            StoreError: The database is unreachable or its schema is at the wrong revision.
        """
        engine = create_engine(url)
        prepare = migrations.upgrade_connection if migrate else migrations.check_revision
        try:
            async with migrations.exclusive(), begin_write(engine) as connection:
                await connection.run_sync(prepare)
        except sa.exc.DBAPIError as exc:
            await engine.dispose()
            raise database_error(exc, engine.url, doing="opening the database") from exc
        except BaseException:
            await engine.dispose()
            raise
        logger.debug("dialect=<%s>, database=<%s> | store opened", engine.dialect.name, engine.url.database)
        return cls(engine, clock=clock)

    async def close(self) -> None:
        """Close every pooled connection. The store cannot be used afterwards."""
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _read(self, doing: str) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return reading(self.engine, doing)

    @contextlib.asynccontextmanager
    async def _write(self, doing: str) -> AsyncIterator[AsyncConnection]:
        async with self._write_queue, writing(self.engine, doing) as connection:
            yield connection

    # Sessions

    async def ensure_session(self, session_id: str, *, bot: str, user_id: str | None = None) -> SessionRecord:
        """The session ``session_id``, created for ``bot`` if it does not exist yet.

        Safe to call on every incoming message, from many workers at once.

        Raises:
            InvalidInputError: The session exists but belongs to another bot.
        """
        _check_key("session id", session_id, sessions.c.id)
        _check_key("bot name", bot, sessions.c.bot)
        now = self._clock()
        values = {"id": session_id, "bot": bot, "user_id": user_id, "created_at": now, "updated_at": now}
        insert = _INSERT_OR_IGNORE[self.dialect_name]
        async with self._write("creating a session") as connection:
            await connection.execute(insert(sessions).values(values).on_conflict_do_nothing())
            row = (await connection.execute(sa.select(sessions).where(sessions.c.id == session_id))).mappings().one()
        record = session_from_row(row)
        if record.bot != bot:
            raise InvalidInputError(
                f"session {session_id!r} belongs to bot {record.bot!r}, not {bot!r}; use a new session id for this bot"
            )
        return record

    async def get_session(self, session_id: str) -> SessionRecord:
        """The session ``session_id``.

        Raises:
            SessionNotFoundError: There is no such session.
        """
        async with self._read("reading a session") as connection:
            row = (await connection.execute(sa.select(sessions).where(sessions.c.id == session_id))).mappings().first()
        if row is None:
            raise SessionNotFoundError(f"no session {session_id!r}; list sessions with `botfactory sessions list`")
        return session_from_row(row)

    async def list_sessions(self, *, bot: str | None = None, limit: int = 100) -> list[SessionRecord]:
        """Up to ``limit`` sessions, newest (by creation) first, optionally of one bot only."""
        query = sa.select(sessions).order_by(sessions.c.created_at.desc(), sessions.c.id).limit(limit)
        if bot is not None:
            query = query.where(sessions.c.bot == bot)
        async with self._read("listing sessions") as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [session_from_row(row) for row in rows]

    # Messages

    async def add_message(
        self,
        session_id: str,
        *,
        role: Role,
        text: str,
        user_id: str | None = None,
        turn_id: str | None = None,
    ) -> MessageRecord:
        """Append a message to the session; its ``seq`` is one more than the last message's.

        Raises:
            SessionNotFoundError: There is no such session.
            InvalidInputError: ``role`` is not a known role.
        """
        async with self._write("adding a message") as connection:
            return await self._insert_message(
                connection, session_id, role=role, text=text, user_id=user_id, turn_id=turn_id
            )

    async def _insert_message(
        self,
        connection: AsyncConnection,
        session_id: str,
        *,
        role: Role,
        text: str,
        user_id: str | None,
        turn_id: str | None,
    ) -> MessageRecord:
        if role not in _ROLES:
            raise InvalidInputError(f"unknown message role {role!r}; use one of {', '.join(sorted(_ROLES))}")
        now = self._clock()
        # Incrementing the session's last_seq takes the next seq and locks the row on PostgreSQL until
        # commit, so concurrent writers to one session take turns. On SQLite the write transaction
        # (BEGIN IMMEDIATE) already excludes other writers.
        taken = await connection.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(last_seq=sessions.c.last_seq + 1, updated_at=now)
            .returning(sessions.c.last_seq)
        )
        seq = taken.scalar_one_or_none()
        if seq is None:
            raise SessionNotFoundError(f"no session {session_id!r}; create it with ensure_session first")
        record = MessageRecord(
            id=new_id(),
            session_id=session_id,
            seq=seq,
            role=role,
            text=text,
            user_id=user_id,
            turn_id=turn_id,
            created_at=now,
        )
        await connection.execute(sa.insert(messages).values(_as_row(record)))
        return record

    async def list_messages(self, session_id: str, *, limit: int | None = None) -> list[MessageRecord]:
        """The session's messages in ``seq`` order; with ``limit``, only the latest ``limit`` of them.

        An unknown session has no messages.
        """
        query = sa.select(messages).where(messages.c.session_id == session_id)
        if limit is not None:
            query = query.order_by(messages.c.seq.desc()).limit(limit)
        async with self._read("listing messages") as connection:
            rows = (await connection.execute(query)).mappings().all()
        return sorted((message_from_row(row) for row in rows), key=lambda message: message.seq)

    # Turns and steps

    async def start_turn(
        self, session_id: str, *, bot: str, input_message_id: str | None, turn_id: str | None = None
    ) -> TurnRecord:
        """Record that ``bot`` started a turn on the session; the turn is ``running``.

        Args:
            session_id: The session the turn belongs to.
            bot: The bot running the turn; must be the session's bot.
            input_message_id: The message the turn answers.
            turn_id: A caller-chosen id; a new one by default.

        Raises:
            SessionNotFoundError: There is no such session.
            InvalidInputError: The session belongs to another bot.
            StoreError: A turn with ``turn_id`` already exists.
        """
        record = TurnRecord(
            id=turn_id if turn_id is not None else new_id(),
            session_id=session_id,
            bot=bot,
            status="running",
            input_message_id=input_message_id,
            reply=None,
            error_code=None,
            error_message=None,
            input_tokens=0,
            output_tokens=0,
            started_at=self._clock(),
            finished_at=None,
        )
        _check_key("turn id", record.id, turns.c.id)
        try:
            async with self._write("starting a turn") as connection:
                owner = (
                    await connection.execute(sa.select(sessions.c.bot).where(sessions.c.id == session_id))
                ).scalar_one_or_none()
                if owner is None:
                    raise SessionNotFoundError(f"no session {session_id!r}; create it with ensure_session first")
                if owner != bot:
                    raise InvalidInputError(f"session {session_id!r} belongs to bot {owner!r}, not {bot!r}")
                await connection.execute(sa.insert(turns).values(_as_row(record)))
        except sa.exc.IntegrityError as exc:
            raise StoreError(f"turn {record.id!r} already exists; start a turn with a new id") from exc
        return record

    async def record_step(self, step: StepRecord) -> StepRecord:
        """Record the result of one step; a position is recorded once and never overwritten.

        Raises:
            NotFoundError: The step's turn does not exist.
            StoreError: A step is already recorded at this position of the turn.
        """
        try:
            async with self._write("recording a step") as connection:
                exists = await connection.execute(sa.select(turns.c.id).where(turns.c.id == step.turn_id))
                if exists.first() is None:
                    raise NotFoundError(f"no turn {step.turn_id!r}; start it with start_turn first")
                await connection.execute(sa.insert(steps).values(_as_row(step)))
        except sa.exc.IntegrityError as exc:
            raise StoreError(
                f"a step is already recorded at position {step.position} of turn {step.turn_id!r}; "
                "replay the recorded step instead of recording it again"
            ) from exc
        return step

    async def list_steps(self, turn_id: str) -> list[StepRecord]:
        """The turn's recorded steps in position order."""
        query = sa.select(steps).where(steps.c.turn_id == turn_id).order_by(steps.c.position)
        async with self._read("listing steps") as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [step_from_row(row) for row in rows]

    async def list_session_steps(
        self, session_id: str, *, since: float | None = None, limit: int = _MAX_SESSION_STEPS
    ) -> list[StepRecord]:
        """Every recorded step of the session's turns, oldest turn first and by position within a turn, in one query.

        Use it to show a whole session (every turn's waterfall) without a query per turn.

        Args:
            session_id: The session.
            since: Only the steps of turns started at or after this time (epoch seconds).
            limit: The most steps returned (at most 20,000).
        """
        query = (
            sa.select(steps)
            .join(turns, turns.c.id == steps.c.turn_id)
            .where(turns.c.session_id == session_id)
            .order_by(turns.c.started_at, steps.c.turn_id, steps.c.position)
            .limit(max(1, min(limit, _MAX_SESSION_STEPS)))
        )
        if since is not None:
            query = query.where(turns.c.started_at >= since)
        async with self._read("listing a session's steps") as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [step_from_row(row) for row in rows]

    async def finish_turn(
        self,
        turn_id: str,
        *,
        status: FinishedTurnStatus,
        reply: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> TurnRecord:
        """Finish a running turn and, in the same transaction, append its reply to the session.

        When ``reply`` is given it becomes an ``assistant`` message with ``turn_id`` set, so a
        finished turn's reply is stored exactly once, or not at all if the transaction fails.

        Raises:
            NotFoundError: There is no such turn.
            InvalidInputError: ``status`` is not a final status, or the turn is already finished.
        """
        if status not in _FINISHED:
            raise InvalidInputError(f"a turn finishes as one of {', '.join(sorted(_FINISHED))}, not {status!r}")
        values: dict[str, Any] = {
            "status": status,
            "reply": reply,
            "error_code": error_code,
            "error_message": error_message,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "finished_at": self._clock(),
        }
        async with self._write("finishing a turn") as connection:
            # The status condition makes finishing idempotent-safe: of two concurrent calls only
            # one updates the row, so the reply cannot be appended twice.
            updated = await connection.execute(
                sa.update(turns).where(turns.c.id == turn_id, turns.c.status == "running").values(values)
            )
            row = (await connection.execute(sa.select(turns).where(turns.c.id == turn_id))).mappings().first()
            if row is None:
                raise NotFoundError(f"no turn {turn_id!r}")
            record = turn_from_row(row)
            if updated.rowcount == 0:
                raise InvalidInputError(f"turn {turn_id!r} is already {record.status}; a turn is finished once")
            if reply is not None:
                await self._insert_message(
                    connection, record.session_id, role="assistant", text=reply, user_id=None, turn_id=turn_id
                )
        logger.debug("session_id=<%s>, turn_id=<%s>, status=<%s> | turn finished", record.session_id, turn_id, status)
        return record

    async def get_turn(self, turn_id: str) -> TurnRecord:
        """The turn ``turn_id``.

        Raises:
            NotFoundError: There is no such turn.
        """
        async with self._read("reading a turn") as connection:
            row = (await connection.execute(sa.select(turns).where(turns.c.id == turn_id))).mappings().first()
        if row is None:
            raise NotFoundError(f"no turn {turn_id!r}; list a session's turns with list_turns")
        return turn_from_row(row)

    async def list_turns(self, session_id: str) -> list[TurnRecord]:
        """The session's turns, oldest first."""
        query = sa.select(turns).where(turns.c.session_id == session_id).order_by(turns.c.started_at, turns.c.id)
        async with self._read("listing turns") as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [turn_from_row(row) for row in rows]


def _as_row(record: MessageRecord | TurnRecord | StepRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)
