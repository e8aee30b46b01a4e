"""The worker: claims sessions with work, runs one durable turn on each, and keeps its leases alive.

One worker per process runs up to ``runtime.concurrency`` turns at once. Any number of workers, on any number
of hosts, share one database: a claim is a lease on a session, renewed by a heartbeat, so a dead worker's
sessions are picked up by the others when its leases expire. Turns are durable: each step is recorded before
the turn goes on, and a resumed turn replays what was recorded (see :mod:`botfactory.agents.engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from botfactory.agents import Bot, BotRegistry, Engine, Event, Step, TurnInput
from botfactory.config import Settings
from botfactory.errors import ApprovalPendingError, BotfactoryError, LeaseLostError, LimitExceededError
from botfactory.gateway import PolicySession, PolicyUser
from botfactory.messages import Message
from botfactory.observability import Metrics
from botfactory.runtime._tracing import turn_span
from botfactory.runtime.governor import LoopLagGovernor
from botfactory.runtime.limits import Controls, TurnLimits, utc_day
from botfactory.runtime.outbox import ApprovalNotices, Deliverer, ReplyPlaceholders, with_trace_context
from botfactory.runtime.resources import SessionResources
from botfactory.runtime.service import CALLER_GROUPS_KEY
from botfactory.runtime.signals import Pulse, Signals
from botfactory.store import Claim, DoubleTexting, RuntimeStore, StepRecord, TurnOutcome, UsageDelta

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

StopReason = Literal["cancel", "interrupt", "lost", "shutdown"]
_MIN_HEARTBEAT_GAP_S: Final = 0.02
_MAINTENANCE_S: Final = 30.0


@dataclass(kw_only=True)
class _Running:
    claim: Claim
    task: asyncio.Task[None] | None = None
    stop: StopReason | None = None
    ending: bool = False
    """The turn is being finished or given back: cancelling it now would only lose that write."""


@dataclass(kw_only=True)
class WorkerStats:
    """Counters for tests and benchmarks."""

    claims: int = 0
    turns_finished: int = 0
    resumed: int = 0
    failed_attempts: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class Worker:
    """Runs turns from the inbox. Start with :meth:`start`; stop with :meth:`stop` (graceful) or :meth:`abort`.

    Args:
        settings: ``runtime`` settings, budgets and prices.
        store: The runtime's store operations.
        engine: Runs the turns.
        bots: The bots this worker can run (every worker should load the same bots).
        controls: Kill switches.
        signals: Wake-ups for new work and control changes.
        clock: Epoch seconds, for step timestamps and daily budgets.
        deliverers: Channels' reply senders; those that show a placeholder (Slack's "thinking…") get one per turn.
        metrics: Counts turns, latency, time to first token, tokens and cost for ``GET /metrics``; ``None``: not
            counted.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        store: RuntimeStore,
        engine: Engine,
        bots: BotRegistry,
        controls: Controls,
        signals: Signals,
        concurrency: int | None = None,
        clock: Callable[[], float] = time.time,
        deliverers: Mapping[str, Deliverer] | None = None,
        metrics: Metrics | None = None,
        governor: LoopLagGovernor | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.config = settings.runtime
        self.store = store
        self.engine = engine
        self.bots = bots
        self.controls = controls
        self.signals = signals
        self.concurrency = concurrency or self.config.concurrency
        self.governor = governor
        """Lowers the turns in flight while the loop runs late (``up``: acks first); ``None``: always ``concurrency``."""
        self.resources = SessionResources(idle_timeout_s=self.config.idle_timeout_s)
        self._placeholders = ReplyPlaceholders(store, deliverers or {})
        self._approvals = ApprovalNotices(store, deliverers or {})
        self.stats = WorkerStats()
        self._clock = clock
        self._running: dict[str, _Running] = {}
        self._slot_freed = Pulse()
        self._claiming = True
        self._tasks: list[asyncio.Task[None]] = []
        self.name = f"worker-{uuid.uuid4().hex[:8]}"

    @property
    def running(self) -> int:
        """Turns in flight now."""
        return len(self._running)

    def policies(self) -> dict[str, DoubleTexting]:
        """Double-texting policy per bot."""
        return {bot.name: bot.double_texting for bot in self.bots}

    async def start(self) -> None:
        """Start claiming, heartbeating and the maintenance loop."""
        loop = asyncio.get_running_loop()
        if self.governor is not None:
            self.governor.start()
        self._tasks = [
            loop.create_task(self._claim_loop(), name=f"{self.name}-claim"),
            loop.create_task(self._heartbeat_loop(), name=f"{self.name}-heartbeat"),
            loop.create_task(self._maintenance_loop(), name=f"{self.name}-maintenance"),
        ]
        logger.info("worker=<%s>, concurrency=<%d> | worker started", self.name, self.concurrency)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; let running turns finish for ``grace_s``; checkpoint and release the rest.

        Completed steps are already recorded, so a turn stopped here resumes on any worker from its next step.
        """
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        self._claiming = False
        self.signals.inbox.fire()
        deadline = asyncio.get_running_loop().time() + grace
        while self._running and asyncio.get_running_loop().time() < deadline:
            marked = self._slot_freed.mark()
            await Pulse.wait(marked, deadline - asyncio.get_running_loop().time())
        leftover = list(self._running.values())
        for running in leftover:
            self._cancel(running, "shutdown")
        await asyncio.gather(*(r.task for r in leftover if r.task is not None), return_exceptions=True)
        with contextlib.suppress(BotfactoryError):
            await self.store.unlease([r.claim.lease for r in leftover])
        await self._stop_loops()
        await self.resources.release_all()
        logger.info("worker=<%s>, released=<%d> | worker stopped", self.name, len(leftover))

    async def abort(self) -> None:
        """Stop at once without releasing leases (for tests that simulate a crash)."""
        self._claiming = False
        for running in list(self._running.values()):
            self._cancel(running, "lost")
        await asyncio.gather(*(r.task for r in self._running.values() if r.task is not None), return_exceptions=True)
        await self._stop_loops()

    async def _stop_loops(self) -> None:
        if self.governor is not None:
            await self.governor.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def cancel_local(self, session_id: str, reason: StopReason) -> bool:
        """Stop the session's turn if this worker runs it; returns whether it did."""
        running = self._running.get(session_id)
        if running is None:
            return False
        self._cancel(running, reason)
        return True

    def _cancel(self, running: _Running, reason: StopReason) -> None:
        if running.ending and reason != "shutdown":
            return
        if running.stop is None:
            running.stop = reason
        if running.task is not None and not running.task.done():
            running.task.cancel()

    # Claiming

    async def _claim_loop(self) -> None:
        while self._claiming:
            free = self._allowed() - len(self._running)
            if free <= 0:
                marked = self._slot_freed.mark()
                if self._allowed() - len(self._running) <= 0:
                    # A governed cap rises again with time, not only when a turn ends.
                    await Pulse.wait(marked, None if self.governor is None else self.governor.sample_s)
                continue
            marked = self.signals.inbox.mark()
            try:
                batch = await self.store.claim(
                    free,
                    lease_s=self.config.lease_s,
                    policies=self.policies(),
                    max_attempts=self.config.max_attempts,
                    max_lifetime_s=self.config.max_lifetime_s,
                )
            except Exception as exc:  # the loop must outlive any one failure
                message = exc.message if isinstance(exc, BotfactoryError) else repr(exc)
                logger.warning("worker=<%s>, error=<%s> | claim failed; retrying", self.name, message)
                if not isinstance(exc, BotfactoryError):
                    logger.debug("claim failure", exc_info=True)
                await asyncio.sleep(min(self.config.poll_s, 1.0))
                continue
            for turn in batch.closed:
                logger.info(
                    "session_id=<%s>, turn_id=<%s>, status=<%s> | turn closed without running",
                    turn.session_id,
                    turn.id,
                    turn.status,
                )
            if not self._claiming:  # stopped while claiming: give the sessions straight back
                await self.store.unlease([claim.lease for claim in batch.claims])
                return
            for claim in batch.claims:
                self._launch(claim)
            if not batch.claims and not batch.closed:
                await Pulse.wait(marked, self.config.poll_s)

    def _allowed(self) -> int:
        return self.concurrency if self.governor is None else min(self.concurrency, self.governor.limit)

    def _launch(self, claim: Claim) -> None:
        self.stats.claims += 1
        if claim.resumed:
            self.stats.resumed += 1
        running = _Running(claim=claim)
        self._running[claim.session_id] = running
        running.task = asyncio.get_running_loop().create_task(self._run(running), name=f"turn-{claim.turn.id}")

    # Heartbeat and maintenance

    async def _heartbeat_loop(self) -> None:
        while True:
            marked = self.signals.control.mark()
            fired = await Pulse.wait(marked, self.config.heartbeat_s)
            if fired:
                self.controls.invalidate()
            leases = [r.claim.lease for r in self._running.values() if r.stop is None and not r.ending]
            try:
                beat = await self.store.heartbeat(leases, lease_s=self.config.lease_s)
            except Exception as exc:  # the loop must outlive any one failure
                message = exc.message if isinstance(exc, BotfactoryError) else repr(exc)
                logger.warning("worker=<%s>, error=<%s> | heartbeat failed", self.name, message)
                continue
            sent = {lease.session_id: lease.token for lease in leases}
            for session_id in beat.lost:
                # The turn may have finished meanwhile (its release is what the beat saw), or a new one started on
                # the session: only a turn still running on the token that was sent has lost its lease.
                running = self._running.get(session_id)
                if running and running.claim.lease.token == sent[session_id] and not running.ending:
                    logger.warning("session_id=<%s> | lease lost to another worker; stopping the turn", session_id)
                    self._cancel(running, "lost")
            for session_id, kind in beat.cancel.items():
                if (running := self._running.get(session_id)) and running.claim.lease.token == sent[session_id]:
                    self._cancel(running, kind)
            if fired:
                await asyncio.sleep(_MIN_HEARTBEAT_GAP_S)

    async def _maintenance_loop(self) -> None:
        interval = min(_MAINTENANCE_S, self.config.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.maintain()
            except Exception as exc:  # the loop must outlive any one failure
                message = exc.message if isinstance(exc, BotfactoryError) else repr(exc)
                logger.warning("worker=<%s>, error=<%s> | maintenance failed", self.name, message)

    async def maintain(self) -> None:
        """Release idle sessions' resources and drop expired events (runs every few seconds on its own)."""
        released = await self.resources.release_idle(busy=frozenset(self._running))
        if released:
            logger.debug("worker=<%s>, sessions=<%d> | idle sessions released", self.name, len(released))
        await self.store.delete_events_before(self._clock() - self.config.event_retention_s)

    # One turn

    async def _run(self, running: _Running) -> None:
        claim = running.claim
        try:
            with turn_span(claim, now=self._clock()) as span:
                outcome = await self._attempt(running)
                running.ending = True
                if outcome is not None:
                    span.set_attribute("botfactory.turn.status", outcome.status)
                    await asyncio.shield(self._finish(running.claim, outcome))
        except LeaseLostError:
            logger.warning(
                "session_id=<%s>, turn_id=<%s> | lease lost; turn left to its new holder",
                claim.session_id,
                claim.turn.id,
            )
        except asyncio.CancelledError:
            pass  # shutdown or crash simulation: the turn stays running and is resumed elsewhere
        except Exception:
            logger.exception("session_id=<%s>, turn_id=<%s> | turn bookkeeping failed", claim.session_id, claim.turn.id)
        finally:
            # After a lost lease this worker may have claimed the session again: leave that newer turn tracked.
            if self._running.get(claim.session_id) is running:
                del self._running[claim.session_id]
            self.resources.touch(claim.session_id)
            self._slot_freed.fire()

    async def _attempt(self, running: _Running) -> TurnOutcome | None:
        """Run the turn once. Returns how it ended, or ``None`` when it must not be finished by this worker."""
        claim = running.claim
        try:
            bot = self.bots.get(claim.bot)
        except BotfactoryError as exc:
            await self._give_back(claim, exc.message)
            return None
        recorder = _Recorder(self, claim, bot)
        limits = TurnLimits(
            settings=self.settings,
            budgets=bot.budgets or self.settings.budgets,
            controls=self.controls,
            store=self.store,
            bot=bot.name,
            session_id=claim.session_id,
            user_id=claim.user_id,
            clock=self._clock,
        )
        turn = TurnInput(
            session_id=claim.session_id,
            turn_id=claim.turn.id,
            text="\n\n".join(item.text for item in claim.inputs),
            bot=bot.name,
            user_id=claim.user_id,
            caller=_caller(claim),
            session=_session_attributes(claim),
            history=[Message(role=m.role, content=m.text) for m in claim.history],
            resources=self.resources.for_session(claim.session_id),
            record_content=bot.record_content or self.settings.tracing.record_content,
        )
        self.store.add_events(
            [
                (
                    claim.session_id,
                    claim.turn.id,
                    "turn_started",
                    {
                        "turn_id": claim.turn.id,
                        "attempt": claim.turn.attempts,
                        "resumed": claim.resumed,
                        "message_ids": [item.message_id for item in claim.inputs],
                    },
                )
            ]
        )
        claim = running.claim = await self._placeholders.begin(claim)  # e.g. Slack's "thinking…"
        deadline = asyncio.timeout(self.config.turn_max_seconds)
        try:
            async with deadline:
                result = await self.engine.run_turn(
                    bot.agent,
                    turn,
                    max_tokens=min(bot.max_tokens_per_turn, self.settings.turn_max_tokens),
                    max_steps=self.config.turn_max_steps,
                    on_event=recorder.on_event,
                    recorder=recorder,
                    replay=[_step_from_record(record) for record in claim.steps],
                    guard=limits,
                )
        except asyncio.CancelledError:
            stop = running.stop
            if stop in ("cancel", "interrupt"):
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                status = "cancelled" if stop == "cancel" else "interrupted"
                return TurnOutcome(
                    status=status,
                    error_code=status,
                    error_message=f"{status} while running",
                    input_tokens=recorder.usage_in,
                    output_tokens=recorder.usage_out,
                    cost=recorder.cost,
                )
            raise
        except TimeoutError as exc:
            if not deadline.expired():  # a model's own timeout: a failed attempt, retried like any other
                await self._give_back(claim, f"TimeoutError: {str(exc)[:300]}")
                return None
            message = f"this turn ran longer than its limit of {self.config.turn_max_seconds:g} seconds"
            return self._stopped(recorder, "time_limit", message)
        except ApprovalPendingError as exc:
            await self._park(claim, exc)
            return None
        except LimitExceededError as exc:
            return self._stopped(recorder, exc.code, exc.message)
        except LeaseLostError:
            raise
        except Exception as exc:
            reason = exc.message if isinstance(exc, BotfactoryError) else f"{type(exc).__name__}: {str(exc)[:300]}"
            if not isinstance(exc, BotfactoryError):
                logger.exception("session_id=<%s>, turn_id=<%s> | turn raised", claim.session_id, claim.turn.id)
            await self._give_back(claim, reason)
            return None
        return TurnOutcome(
            status="completed",
            reply=result.reply,
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            cost=recorder.cost,
            stale_when_newer=bot.double_texting in ("coalesce", "interrupt"),
        )

    @staticmethod
    def _stopped(recorder: _Recorder, code: str, message: str) -> TurnOutcome:
        return TurnOutcome(
            status="failed",
            reply=f"Sorry, I had to stop: {message}.",
            error_code=code,
            error_message=message,
            input_tokens=recorder.usage_in,
            output_tokens=recorder.usage_out,
            cost=recorder.cost,
        )

    async def _park(self, claim: Claim, pending: ApprovalPendingError) -> None:
        """Release a turn that waits for an approval: no worker holds it until it is decided or expires."""
        if running := self._running.get(claim.session_id):
            running.ending = True
        await asyncio.shield(
            self.store.park(claim.lease, claim.turn.id, until=pending.expires_at + 0.001, reason=pending.message)
        )
        self.store.add_events(
            [
                (
                    claim.session_id,
                    claim.turn.id,
                    "approval_requested",
                    {"approval_id": pending.approval_id, "expires_at": pending.expires_at, "message": pending.message},
                )
            ]
        )
        logger.info(
            "session_id=<%s>, turn_id=<%s>, approval_id=<%s> | turn waits for an approval",
            claim.session_id,
            claim.turn.id,
            pending.approval_id,
        )
        await self._approvals.notify(claim, pending.approval_id)

    async def _give_back(self, claim: Claim, reason: str) -> None:
        if running := self._running.get(claim.session_id):
            running.ending = True
        self.stats.failed_attempts += 1
        attempts = claim.turn.attempts
        delay = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempts - 1))
        delay *= random.uniform(0.8, 1.2)
        dead = await asyncio.shield(
            self.store.release(
                claim.lease, claim.turn.id, error=reason, retry_in_s=delay, max_attempts=self.config.max_attempts
            )
        )
        logger.warning(
            "session_id=<%s>, turn_id=<%s>, attempt=<%d>, dead_letter=<%s> | turn attempt failed: %s",
            claim.session_id,
            claim.turn.id,
            attempts,
            dead,
            reason,
        )
        if dead:
            if self.metrics is not None:
                self.metrics.turn_finished(bot=claim.bot, status="dead", latency_s=self._clock() - claim.enqueued_at)
            await self._placeholders.end(claim, "dead")

    async def _finish(self, claim: Claim, outcome: TurnOutcome) -> None:
        # The reply carries the turn's trace context, so its delivery is a span of the same trace.
        await self.store.finish(claim.lease, claim.turn.id, outcome, claim=with_trace_context(claim))
        await self._placeholders.end(claim, outcome.status)
        self.stats.turns_finished += 1
        self.stats.by_status[outcome.status] = self.stats.by_status.get(outcome.status, 0) + 1
        if self.metrics is not None:
            latency = self._clock() - claim.enqueued_at
            self.metrics.turn_finished(bot=claim.bot, status=outcome.status, latency_s=latency)
        logger.debug(
            "session_id=<%s>, turn_id=<%s>, status=<%s> | turn finished",
            claim.session_id,
            claim.turn.id,
            outcome.status,
        )


class _Recorder:
    """Persists the turn's steps (fenced by the lease) and events, and adds up what the turn costs."""

    def __init__(self, worker: Worker, claim: Claim, bot: Bot) -> None:
        self._worker = worker
        self._claim = claim
        self._bot = bot
        self.usage_in = 0
        self.usage_out = 0
        self.cost = 0.0
        self._answered = False
        """A model call of this turn has answered (time to first token is measured once per turn)."""
        for record in claim.steps:
            if record.kind == "model":
                self._answered = self._answered or record.status == "completed"
                self._count(record.name, record.output)

    def _count(self, alias: str, output: Any) -> tuple[int, int, float]:
        usage = (output or {}).get("usage") or {}
        tokens_in, tokens_out = int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
        cost = self._worker.settings.price(alias).cost(tokens_in, tokens_out)
        self.usage_in += tokens_in
        self.usage_out += tokens_out
        self.cost += cost
        return tokens_in, tokens_out, cost

    async def record(self, step: Step) -> None:
        usage: UsageDelta | None = None
        tokens_in, tokens_out, cost = 0, 0, 0.0
        if step.kind == "model":
            tokens_in, tokens_out, cost = self._count(step.name, step.output)
            usage = UsageDelta(
                bot=self._bot.name,
                user_id=self._claim.user_id,
                session_id=self._claim.session_id,
                day=utc_day(step.finished_at),
                tokens=tokens_in + tokens_out,
                cost=cost,
                model=step.name,
            )
        await self._worker.store.record_step(
            self._claim.lease,
            StepRecord(
                turn_id=self._claim.turn.id,
                position=step.position,
                agent_path=step.agent_path,
                kind="model" if step.kind == "model" else "tool",
                name=step.name,
                input=step.input,
                output=step.output,
                status="completed" if step.ok else "failed",
                started_at=step.started_at,
                finished_at=step.finished_at,
            ),
            usage,
        )
        if (metrics := self._worker.metrics) is not None and step.kind == "model":
            metrics.model_call(
                bot=self._bot.name,
                model=step.name,
                user_id=self._claim.user_id,
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                cost=cost,
            )
            if not self._answered and step.ok:
                metrics.first_response(bot=self._bot.name, seconds=step.finished_at - self._claim.enqueued_at)
        self._answered = self._answered or (step.kind == "model" and step.ok)

    async def on_event(self, event: Event) -> None:
        self._worker.store.add_events([(self._claim.session_id, event.turn_id, event.kind, event.to_dict())])


def _caller(claim: Claim) -> PolicyUser | None:
    """Who the turn acts for, as tool policies see them: the user, their workspace and the ingress channel."""
    if claim.user_id is None:
        return None
    latest = claim.inputs[-1] if claim.inputs else None
    reply_to = (latest.reply_to if latest is not None else None) or {}
    team = reply_to.get("team")
    groups = reply_to.get(CALLER_GROUPS_KEY) or ()
    return PolicyUser(
        id=claim.user_id,
        groups=frozenset(str(g) for g in groups) if isinstance(groups, list) else frozenset(),
        team=str(team) if team else None,
        channel=latest.channel if latest is not None else None,
    )


def _session_attributes(claim: Claim) -> PolicySession:
    """The conversation's attributes for tool policies: for Slack, its channel and thread."""
    reply_to = (claim.inputs[-1].reply_to if claim.inputs else None) or {}
    channel, thread = reply_to.get("channel"), reply_to.get("thread_ts")
    return PolicySession(
        id=claim.session_id, channel=str(channel) if channel else None, thread=str(thread) if thread else None
    )


def _step_from_record(record: StepRecord) -> Step:
    return Step(
        position=record.position,
        agent_path=record.agent_path,
        kind=record.kind,
        name=record.name,
        input=record.input or {},
        output=record.output or {},
        ok=record.status == "completed",
        started_at=record.started_at,
        finished_at=record.finished_at or record.started_at,
    )
