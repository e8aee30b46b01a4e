"""A runtime on a real database (SQLite file and PostgreSQL) with scripted models, for the runtime suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from harness import Harness, MakeRuntime, echo, echo_bot

from botfactory.agents import Bot, BotRegistry, Engine
from botfactory.config import Settings
from botfactory.inference import Inference, Model
from botfactory.runtime import Deliverer, start_runtime
from botfactory.store import Store
from botfactory.testing import ScriptedModel


@pytest.fixture
async def make_runtime(database_url: str) -> AsyncIterator[MakeRuntime]:
    """Build a runtime: ``await make_runtime(bots=[...], script=[...], run_worker=True, **runtime_settings)``.

    Each call is one process's runtime (its own writer, signals, worker and change feed) on the same database, so
    two calls make two "processes" that share the work; ``models`` may be any :class:`Model`.
    """
    opened: list[Harness] = []
    stores: list[Store] = []

    async def make(
        *,
        bots: Sequence[Bot] | None = None,
        script: Sequence[Any] | None = None,
        models: Mapping[str, Model] | None = None,
        run_worker: bool = True,
        settings: Mapping[str, Any] | None = None,
        deliverers: Mapping[str, Deliverer] | None = None,
        serves_ingress: bool = False,
        **runtime: Any,
    ) -> Harness:
        store = await Store.open(database_url)
        stores.append(store)
        runtime_settings = {"heartbeat_s": 0.2, "poll_s": 0.1, "backoff_base_s": 0.05, "backoff_max_s": 0.2, **runtime}
        resolved = Settings.load(database_url=database_url, runtime=runtime_settings, **(settings or {}))
        chosen: dict[str, Model] = dict(models or {"small": ScriptedModel(script or [echo], cycle=True)})
        registry = BotRegistry(bots or [echo_bot()])
        stack = await start_runtime(
            resolved,
            store=store,
            engine=Engine(Inference(chosen)),
            bots=registry,
            run_worker=run_worker,
            listen=True,
            deliverers=deliverers,
            serves_ingress=serves_ingress,
        )
        harness = Harness(url=database_url, store=store, stack=stack, models=chosen)
        opened.append(harness)
        return harness

    yield make
    for harness in reversed(opened):
        with contextlib.suppress(Exception):
            await harness.stack.aclose(grace_s=0)
    for store in stores:
        await store.close()
