"""The composition root: builds every service from settings, in order, and closes them in reverse.

``botfactory up``, ``chat`` (in-process) and the test suite all start the platform through here, so they
run the same code path a channel takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

from botfactory.agents import BotContext, BotRegistry, Engine, ToolSearch, contract_agents, load_bots_dir
from botfactory.bots import REFERENCE_BOTS_DIR, SUPPORT_DOCS_DIR, reference_bots
from botfactory.channels import (
    APPROVAL_ACTION_PREFIX,
    SLACK_CHANNEL,
    SlackApps,
    SlackDeliverer,
    approval_click_handler,
)
from botfactory.config import Settings
from botfactory.errors import ConfigError
from botfactory.gateway import StoreRateLimiter
from botfactory.identity import ApiKeys, ClientCredentialsTokens, Credentials, OidcVerifier, Vault, load_master_key
from botfactory.inference import Inference, InferenceStack, InstallProgress, start_inference
from botfactory.memory import Embedder, IngestReport, KnowledgeBase, OnnxMiniLMEmbedder
from botfactory.observability import AuditRetention, BucketRetention, Metrics, TracingExport, start_tracing
from botfactory.runtime import Runtime, RuntimeStack, Worker, build_gateway, start_runtime, start_tool_sources
from botfactory.store import ApiKeyStore, CostStore, KnowledgeStore, SecretStore, Store
from botfactory.testing import GitHubStandIn, run_standin_server

__all__ = ["DEFAULT_KB", "Platform", "open_knowledge"]

logger = logging.getLogger(__name__)

DEFAULT_KB = "default"
_DAY_S = 86_400.0
DEMO_GITHUB_TOKEN = "demo-token"

IngestProgress = Callable[[int, int], None]
Role = Literal["all", "serve", "worker"]
"""``all``: ``botfactory up``; ``serve``: HTTP and inbox, no turns; ``worker``: turns only."""


@dataclass(kw_only=True)
class Platform:
    """Every running service of one botfactory process."""

    settings: Settings
    store: Store
    inference: Inference
    knowledge: KnowledgeBase
    bots: BotRegistry
    engine: Engine
    """Runs turns; ``engine.gateway`` is the tool gateway (policies, audit log, limits, credentials)."""
    runtime_stack: RuntimeStack
    api_keys: ApiKeys
    """Verifies the API keys requests present (see :mod:`botfactory.server.auth`)."""
    oidc: OidcVerifier | None = None
    """Verifies JWT bearer tokens from the ``[oidc]`` issuer; ``None``: JWTs are refused."""
    github_demo: GitHubStandIn | None = None
    slack: SlackApps | None = None
    """The Slack apps served (``None``: Slack is off); register interactive action handlers on ``slack.interactions``."""
    metrics: Metrics = field(default_factory=Metrics)
    """This process's Prometheus series (``GET /metrics``): the worker and the gateway count into it."""
    tracing: TracingExport | None = None
    """This platform's span sinks (span store, OTLP exporter) and the span retention job."""
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    @property
    def runtime(self) -> Runtime:
        """Enqueue, watch, cancel: the runtime as channels see it."""
        return self.runtime_stack.runtime

    @property
    def worker(self) -> Worker | None:
        """The worker running turns in this process, if this process runs any."""
        return self.runtime_stack.worker

    @classmethod
    async def start(
        cls,
        settings: Settings,
        *,
        inference: Inference | None = None,
        start_models: bool = True,
        embedder: Embedder | None = None,
        install_progress: InstallProgress | None = None,
        ingest_progress: IngestProgress | None = None,
        role: Role = "all",
        concurrency: int | None = None,
    ) -> Platform:
        """Open the store, start the models, seed the default knowledge base, load the bots, start the runtime.

        Args:
            role: What this process does: ``all`` (``up``), ``serve`` (no models, no turns) or ``worker``.
            concurrency: Turns the worker runs at once (default ``runtime.concurrency``).
            settings: Resolved settings.
            inference: Use this instead of starting the configured models (tests pass scripted models).
            start_models: Start the configured models; ``False`` serves no model (for listing and admin commands).
            embedder: Use this instead of the local ONNX embedder.
            install_progress: Progress of assembling model files on first run.
            ingest_progress: Progress of ingesting the shipped docs on first run.
        """
        stack = contextlib.AsyncExitStack()
        try:
            store = await Store.open(settings.resolved_database_url)
            stack.push_async_callback(store.close)
            # Spans go to the span store and the OTLP collector from here until the store closes (flushed first).
            tracing = start_tracing(
                settings.tracing,
                store.engine,
                cleanup=role != "serve" and start_models,
                span_process_url=_span_process_url(settings, store, role),
            )
            stack.push_async_callback(tracing.aclose)
            if role != "serve" and start_models:  # the process that runs the worker keeps the audit log trimmed
                audit_retention = AuditRetention(store.engine, retention_s=settings.gateway.audit_retention_s)
                audit_retention.start()
                stack.push_async_callback(audit_retention.aclose)
                limits = settings.gateway.rate_limits
                if limits.longest_refill_s and not settings.gateway.redis_url:  # Redis expires its own keys
                    idle_s = max(_DAY_S, 2 * limits.longest_refill_s)
                    bucket_retention = BucketRetention(store.engine, idle_s=idle_s)
                    bucket_retention.start()
                    stack.push_async_callback(bucket_retention.aclose)
            knowledge, _ = await open_knowledge(store, embedder=embedder, seed_progress=ingest_progress)
            github_demo: GitHubStandIn | None = None
            if not settings.github_base_url:
                github_demo = GitHubStandIn(org=settings.github_org, token=DEMO_GITHUB_TOKEN)
                demo_url = stack.enter_context(run_standin_server(github_demo))
                logger.info("github=<%s> | no BOTFACTORY_GITHUB_BASE_URL: using the local demo stand-in", demo_url)
                settings = settings.model_copy(
                    update={"github_base_url": demo_url, "github_token": SecretStr(DEMO_GITHUB_TOKEN)}
                )
            if inference is None and (not start_models or role == "serve"):
                inference = Inference({})
            if inference is None:
                inference_stack: InferenceStack = await start_inference(settings, progress=install_progress)
                stack.push_async_callback(inference_stack.aclose)
                inference = inference_stack.inference
            context = BotContext(settings=settings, knowledge=knowledge, cleanup=stack)
            bots = BotRegistry(reference_bots(context))
            if settings.bots_dir is not None:
                for bot in load_bots_dir(settings.bots_dir, context):
                    bots.add(bot)
            for external in contract_agents(bot.agent for bot in bots):
                stack.push_async_callback(external.aclose)  # stops the apps it started, after the runtime stops
            await start_tool_sources(bots, stack)  # MCP servers, OpenAPI documents: their tools exist from here
            credentials = _credentials(settings, store, stack, create_key=role == "all")
            gateway = build_gateway(
                settings,
                store=store,
                bots=bots,
                stack=stack,
                reference_dir=REFERENCE_BOTS_DIR,
                credentials=credentials,
            )
            engine = Engine(
                inference,
                gateway=gateway,
                tool_search=ToolSearch(knowledge.embedder),
                max_visible_tools=settings.gateway.tool_search_threshold,
            )
            slack = slack_app(settings)
            slack_deliverer = SlackDeliverer(slack) if slack is not None else None
            if slack_deliverer is not None:
                stack.push_async_callback(slack_deliverer.aclose)  # after the runtime (closed first) stops delivering
            metrics = Metrics(per_user=settings.metrics.per_user_labels)
            budgets = settings.budgets  # each bot's own budgets, else these (as the worker enforces them)
            metrics.watch_database(CostStore(store.engine), lambda: {b.name: b.budgets or budgets for b in bots})
            gateway.metrics = metrics
            runtime_stack = await start_runtime(
                settings,
                store=store,
                engine=engine,
                bots=bots,
                run_worker=role != "serve" and start_models,
                listen=role != "all",
                serves_ingress=role == "all",
                concurrency=concurrency,
                metrics=metrics,
                deliverers={SLACK_CHANNEL: slack_deliverer} if slack_deliverer is not None else None,
            )
            stack.push_async_callback(runtime_stack.aclose)
            if tracing.store_sink is not None and role != "worker":
                # Where requests are acked, span rows take turns with the runtime's writes (SQLite has one writer at
                # a time) rather than racing them; a worker-only process keeps the faster connection of their own.
                store_sink = tracing.store_sink
                store_sink.write_through(runtime_stack.queue.writer)
                stack.callback(store_sink.write_through, None)  # runs before the runtime (and its writer) stops
            if gateway.audit is not None:  # audit rows join the runtime's transactions, off the event loop
                gateway.audit.write_through(runtime_stack.queue.writer)
                stack.callback(gateway.audit.write_through, None)  # before the writer stops; the last rows still land
            if isinstance(gateway.rate_limiter, StoreRateLimiter):  # no second writer racing for SQLite's lock
                gateway.rate_limiter.write_through(runtime_stack.queue.writer)
                stack.callback(gateway.rate_limiter.write_through, None)
            gateway.approvals = runtime_stack.queue.approvals  # a turn waiting for one is parked in the same store
            if slack is not None and slack_deliverer is not None:  # Approve / Deny buttons in the thread
                slack.interactions.register(APPROVAL_ACTION_PREFIX, approval_click_handler(slack_deliverer))
            oidc = OidcVerifier(settings.oidc) if settings.oidc is not None else None
            if oidc is not None:
                stack.push_async_callback(oidc.aclose)
            if slack_deliverer is not None:  # learn each app's own user (auth.test) without delaying the start
                identifying = asyncio.get_running_loop().create_task(slack_deliverer.identify(), name="slack-identify")
                stack.push_async_callback(_cancel, identifying)
        except BaseException:
            await stack.aclose()
            raise
        return cls(
            settings=settings,
            store=store,
            inference=inference,
            knowledge=knowledge,
            bots=bots,
            engine=engine,
            runtime_stack=runtime_stack,
            api_keys=ApiKeys(ApiKeyStore(store.engine), ttl_s=settings.auth_cache_s),
            oidc=oidc,
            slack=slack,
            github_demo=github_demo,
            metrics=metrics,
            tracing=tracing,
            _stack=stack,
        )

    async def aclose(self) -> None:
        """Stop the models and close the store."""
        await self._stack.aclose()


def _credentials(
    settings: Settings, store: Store, stack: contextlib.AsyncExitStack, *, create_key: bool
) -> Credentials | None:
    """What the gateway injects into tools: the vault's secrets and OAuth tokens; ``None`` without a master key.

    ``botfactory up`` creates the key file on first run; ``serve`` and ``worker`` never do (every host must use
    the same key: set ``BOTFACTORY_MASTER_KEY`` or copy the file), and without one, tools that declare a
    credential fail with a message saying so.
    """
    try:
        key = load_master_key(settings, create=create_key)
    except ConfigError as exc:
        logger.warning("vault=<off> | tools that declare credentials will fail: %s", exc.message)
        return None
    vault = Vault(SecretStore(store.engine), key)
    oauth = ClientCredentialsTokens(settings.oauth_clients, vault) if settings.oauth_clients else None
    if oauth is not None:
        stack.push_async_callback(oauth.aclose)
    return Credentials(vault, oauth)


def slack_app(settings: Settings) -> SlackApps | None:
    """The Slack apps the settings describe, or ``None`` when Slack is not configured.

    Raises:
        ConfigError: only one of the signing secret and the bot token is set, or two apps share a name.
    """
    return SlackApps.from_settings(settings)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def open_knowledge(
    store: Store, *, embedder: Embedder | None = None, seed_progress: IngestProgress | None = None
) -> tuple[KnowledgeBase, IngestReport | None]:
    """The default knowledge base; on first use it is seeded with the support bot's shipped docs."""
    knowledge = KnowledgeBase(DEFAULT_KB, KnowledgeStore(store.engine), embedder or OnnxMiniLMEmbedder())
    report = None
    if (await knowledge.stats()).documents == 0:
        report = await knowledge.ingest(SUPPORT_DOCS_DIR, progress=seed_progress)
        logger.info("kb=<%s>, documents=<%d> | seeded with the shipped docs", DEFAULT_KB, report.added)
    return knowledge, report


def _span_process_url(settings: Settings, store: Store, role: Role) -> str | None:
    """The database a span process may write to, where one should: a worker's (its span rows need no turns with
    its own writes), and any process's on PostgreSQL. Processes that ack requests on SQLite write span rows through
    the runtime's writer instead (SQLite has one writer at a time), and an in-memory database has no second reader.
    """
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and (role != "worker" or not url.database or "memory" in url.database):
        return None
    return settings.resolved_database_url
