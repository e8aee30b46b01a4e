"""The batch writer on PostgreSQL: a transaction chosen as a deadlock victim (another process took the same rows in
the other order) is run again, so its callers see success, not an error."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from botfactory.store import BatchWriter


@pytest.mark.integration
@pytest.mark.postgres
async def test_a_deadlock_victim_is_retried_and_succeeds(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as setup:
        setup.execute(sa.text("CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL)"))
        setup.execute(sa.text("INSERT INTO counters VALUES (1, 0), (2, 0)"))
    writer = BatchWriter(postgres_url)
    other = engine.connect()
    try:
        other.begin()
        other.execute(sa.text("UPDATE counters SET n = n + 10 WHERE id = 2"))  # "another process" holds row 2

        def one_then_two(connection: sa.Connection) -> str:
            connection.execute(sa.text("UPDATE counters SET n = n + 1 WHERE id = 1"))
            connection.execute(sa.text("UPDATE counters SET n = n + 1 WHERE id = 2"))  # waits for the other
            return "written"

        written = asyncio.ensure_future(writer.write(one_then_two))
        await asyncio.sleep(0.2)  # the writer waits first, so PostgreSQL picks it as the deadlock's victim

        def other_takes_row_one() -> None:
            other.execute(sa.text("UPDATE counters SET n = n + 10 WHERE id = 1"))  # closes the cycle
            other.commit()

        closing = threading.Thread(target=other_takes_row_one)
        closing.start()
        assert await asyncio.wait_for(written, 10) == "written"
        await asyncio.to_thread(closing.join)
    finally:
        other.close()
        await writer.close()
    with engine.connect() as check:
        assert check.execute(sa.text("SELECT n FROM counters ORDER BY id")).scalars().all() == [11, 11]
    engine.dispose()


@pytest.mark.integration
@pytest.mark.postgres
async def test_operations_that_commit_alone_run_side_by_side(postgres_url: str) -> None:
    """On PostgreSQL one writer thread would make every enqueue wait for the previous one's commit."""
    writer = BatchWriter(postgres_url)
    committed: list[int] = []
    commits_seen: list[int] = []
    writer.on_commit = lambda: commits_seen.append(1)

    def slow(n: int) -> Callable[[sa.Connection], int]:
        def operation(connection: sa.Connection) -> int:
            connection.execute(sa.text("SELECT pg_sleep(0.3)"))
            committed.append(n)
            return n

        return operation

    try:
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(*(writer.write(slow(n), alone=True) for n in range(4)))
        elapsed = asyncio.get_running_loop().time() - started
        batched = await writer.write(lambda connection: "batched")  # the ordinary lane still works alongside
    finally:
        await writer.close()
    assert results == [0, 1, 2, 3] and sorted(committed) == [0, 1, 2, 3]
    assert batched == "batched"
    assert elapsed < 0.9  # four 0.3 s transactions one after another would take 1.2 s
    assert len(commits_seen) == 5  # every alone commit wakes listeners like a batch does


@pytest.mark.integration
@pytest.mark.postgres
async def test_a_failing_alone_operation_fails_only_its_caller(postgres_url: str) -> None:
    writer = BatchWriter(postgres_url)

    def broken(connection: sa.Connection) -> None:
        connection.execute(sa.text("SELECT * FROM no_such_table"))

    try:
        outcomes = await asyncio.gather(
            writer.write(broken, alone=True),
            writer.write(lambda connection: connection.execute(sa.text("SELECT 1")).scalar(), alone=True),
            return_exceptions=True,
        )
    finally:
        await writer.close()
    assert isinstance(outcomes[0], Exception) and "no_such_table" in str(outcomes[0])
    assert outcomes[1] == 1
