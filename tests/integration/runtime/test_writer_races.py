"""The batch writer on PostgreSQL: a transaction chosen as a deadlock victim (another process took the same rows in
the other order) is run again, so its callers see success, not an error."""

from __future__ import annotations

import asyncio
import threading

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
