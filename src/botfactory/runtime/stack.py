"""Starting the runtime's parts in order, for the roles a process plays, and stopping them in reverse.

``botfactory up`` plays both roles in one process; ``serve`` only takes messages and answers queries;
``worker`` only runs turns. Processes that share a database with others listen for their changes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from botfactory.agents import BotRegistry, Engine
from botfactory.config import Settings
from botfactory.observability import AlertEvaluator, AlertNotifier, Metrics, ThrottleCache
from botfactory.runtime.governor import LoopLagGovernor
from botfactory.runtime.limits import Controls
from botfactory.runtime.outbox import Deliverer, OutboxDispatcher
from botfactory.runtime.service import Runtime
from botfactory.runtime.signals import Signals
from botfactory.runtime.worker import Worker
from botfactory.store import (
    CONTROL_CHANNEL,
    EVENTS_CHANNEL,
    INBOX_CHANNEL,
    AlertSignals,
    AlertStore,
    BatchWriter,
    ChangeFeed,
    RuntimeStore,
    Store,
    ThrottleStore,
)

__all__ = ["RuntimeStack", "start_runtime"]

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class RuntimeStack:
    """The runtime parts of one process."""

    runtime: Runtime
    queue: RuntimeStore
    signals: Signals
    controls: Controls
    worker: Worker | None = None
    outbox: OutboxDispatcher | None = None
    alerts: AlertEvaluator | None = None
    """Evaluates ``[[alerts.rules]]`` in processes that run a worker, when rules are configured."""
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    async def aclose(self, *, grace_s: float | None = None) -> None:
        """Stop the worker gracefully (``grace_s``, default ``runtime.shutdown_grace_s``), then everything else."""
        if self.worker is not None:
            await self.worker.stop(grace_s)
        await self._stack.aclose()


async def start_runtime(
    settings: Settings,
    *,
    store: Store,
    engine: Engine,
    bots: BotRegistry,
    run_worker: bool,
    listen: bool,
    deliverers: Mapping[str, Deliverer] | None = None,
    concurrency: int | None = None,
    metrics: Metrics | None = None,
    serves_ingress: bool = False,
) -> RuntimeStack:
    """Start the runtime for this process.

    Args:
        run_worker: Run turns here (``up``, ``worker``).
        listen: Follow other processes' changes (PostgreSQL notifications, or SQLite's change counter).
            PostgreSQL is always followed: any process may share it.
        deliverers: Channels' reply senders, by channel name.
        metrics: What the worker counts turns, tokens and cost into (``None``: not counted).
        serves_ingress: This process also serves the channels (``up``): the worker yields to their acks while
            the event loop runs late (``runtime.ingress_max_lag_ms``, :class:`LoopLagGovernor`).
    """
    stack = contextlib.AsyncExitStack()
    try:
        writer = BatchWriter(settings.resolved_database_url)
        stack.push_async_callback(writer.close)
        queue = RuntimeStore(writer)
        signals = Signals()
        writer.on_commit = signals.events.fire
        controls = Controls(queue, refresh_s=settings.runtime.controls_refresh_s)
        if listen or queue.notifies:
            feed = await ChangeFeed.start(
                settings.resolved_database_url,
                (INBOX_CHANNEL, CONTROL_CHANNEL, EVENTS_CHANNEL),
                signals.on_notification,
                sqlite_poll_s=settings.runtime.sqlite_poll_s,
            )
            stack.push_async_callback(feed.close)
        rules = settings.alerts.rules
        alerts = AlertNotifier.from_settings(settings.alerts, AlertStore(store.engine)) if rules else None
        runtime = Runtime(
            settings=settings, store=store, queue=queue, bots=bots, signals=signals, controls=controls, alerts=alerts
        )
        worker: Worker | None = None
        outbox: OutboxDispatcher | None = None
        if run_worker:
            lag_ms = settings.runtime.ingress_max_lag_ms
            # The worker shares this process's loop with the channels (``up``): their acks come first.
            governor = (
                LoopLagGovernor(
                    ceiling=concurrency or settings.runtime.concurrency,
                    max_lag_s=lag_ms / 1000,
                    write_latency=lambda: writer.recent_latency_s(0.1),
                )
                if serves_ingress and lag_ms > 0
                else None
            )
            worker = Worker(
                settings=settings,
                store=queue,
                engine=engine,
                bots=bots,
                controls=controls,
                signals=signals,
                concurrency=concurrency,
                deliverers=deliverers,
                metrics=metrics,
                governor=governor,
            )
            await worker.start()
            outbox = OutboxDispatcher(store=queue, bots=bots, deliverers=deliverers or {}, signals=signals)
            await outbox.start()
            stack.push_async_callback(outbox.stop)
        evaluator: AlertEvaluator | None = None
        if alerts is not None:
            evaluator = await _start_alerts(settings, store, engine, runtime, alerts, stack, evaluate=run_worker)
    except BaseException:
        await stack.aclose()
        raise
    return RuntimeStack(
        runtime=runtime,
        queue=queue,
        signals=signals,
        controls=controls,
        worker=worker,
        outbox=outbox,
        alerts=evaluator,
        _stack=stack,
    )


async def _start_alerts(
    settings: Settings,
    store: Store,
    engine: Engine,
    runtime: Runtime,
    alerts: AlertNotifier,
    stack: contextlib.AsyncExitStack,
    *,
    evaluate: bool,
) -> AlertEvaluator | None:
    """With a ``tool_errors`` rule, this process's gateway refuses throttled tools (workers and the MCP endpoint
    call tools); processes that run a worker also evaluate the rules (every worker does: raising is atomic)."""
    throttles = ThrottleStore(store.engine)
    cache: ThrottleCache | None = None
    if any(rule.kind == "tool_errors" for rule in settings.alerts.rules):
        cache = ThrottleCache(throttles)
        engine.gateway.throttles = cache
    if not evaluate:
        return None
    evaluator = AlertEvaluator(
        settings.alerts,
        signals=AlertSignals(store.engine),
        notifier=alerts,
        throttles=throttles,
        quarantine=runtime.quarantine_session,
        throttle_cache=cache,
    )
    await evaluator.start()
    stack.push_async_callback(evaluator.stop)
    return evaluator
