"""Settings: one typed object, resolved once and passed to the services that need it.

Precedence, lowest first: built-in defaults < ``botfactory.toml`` < ``BOTFACTORY_*`` environment
variables < explicit overrides (CLI flags). ``BOTFACTORY_HOME`` (default ``~/.botfactory``) holds all
local state: the SQLite database, assembled model files, indexes. The configuration file is
``BOTFACTORY_CONFIG`` if set, else ``./botfactory.toml``, else ``$BOTFACTORY_HOME/botfactory.toml``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from botfactory.errors import ConfigError

__all__ = [
    "AlertRule",
    "AlertSettings",
    "BudgetSettings",
    "ConsoleSettings",
    "GatewaySettings",
    "MetricsSettings",
    "ModelConfig",
    "ModelPrice",
    "OAuthClientConfig",
    "OidcSettings",
    "RateLimitConfig",
    "RateLimitSettings",
    "RuntimeSettings",
    "Settings",
    "SlackAppConfig",
    "TracingSettings",
    "default_home",
    "find_config_file",
]

ProviderName = Literal["local", "openai", "scripted"]


class ModelConfig(BaseModel):
    """One model alias: which provider serves it and how.

    For ``local``, ``model`` names an entry of the built-in catalogue (see ``botfactory models list``)
    and the platform starts a llama.cpp server for it. For ``openai``, ``base_url`` is any
    OpenAI-compatible endpoint and ``model`` the name it expects.
    """

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName = "local"
    model: str
    base_url: str | None = None
    api_key: SecretStr | None = None
    context_size: int = Field(default=4096, ge=256)
    threads: int = Field(default=2, ge=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    fallbacks: list[str] = Field(default_factory=list)
    native_tools: bool | None = None
    """Force native tool calling on or off; ``None`` takes the provider's profile."""


class ModelPrice(BaseModel):
    """What a model costs, in the currency budgets are written in, per million tokens."""

    model_config = ConfigDict(extra="forbid")

    input_per_million: float = Field(default=0.0, ge=0)
    output_per_million: float = Field(default=0.0, ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """The price of one call."""
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1_000_000


class BudgetSettings(BaseModel):
    """Token and spend caps, checked before every model call. ``None`` is no cap.

    Daily caps count from midnight UTC; session caps count the session's whole life.
    """

    model_config = ConfigDict(extra="forbid")

    bot_daily_tokens: int | None = Field(default=None, ge=0)
    bot_daily_cost: float | None = Field(default=None, ge=0)
    user_daily_tokens: int | None = Field(default=None, ge=0)
    user_daily_cost: float | None = Field(default=None, ge=0)
    session_tokens: int | None = Field(default=None, ge=0)
    session_cost: float | None = Field(default=None, ge=0)

    @property
    def any(self) -> bool:
        """Whether any cap is set."""
        return any(value is not None for value in self.model_dump().values())


class RuntimeSettings(BaseModel):
    """The durable runtime: leases, retries, limits and session lifecycle (``[runtime]`` in botfactory.toml)."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(default=32, ge=1, le=4096)
    """Turns one worker process runs at once."""
    ingress_max_lag_ms: float = Field(default=20.0, ge=0)
    """``botfactory up`` only (worker and channels in one process): while the event loop wakes later than this,
    the worker runs fewer turns at once, so acknowledging new messages is not delayed by earlier ones'
    turns. 0 turns it off."""
    lease_s: float = Field(default=30.0, gt=0)
    """How long a claim on a session lasts without a heartbeat; a dead worker's session moves on after this."""
    heartbeat_s: float = Field(default=1.0, gt=0)
    """How often a worker renews its leases and looks for cancellations made on other hosts."""
    poll_s: float = Field(default=1.0, gt=0)
    """Idle workers look for work at least this often (PostgreSQL notifications wake them sooner)."""
    sqlite_poll_s: float = Field(default=0.005, gt=0)
    """On SQLite, idle workers check for any new commit this often (a cheap in-memory read)."""
    max_attempts: int = Field(default=5, ge=1)
    """Attempts (crashes and failures included) before a message goes to the dead letters."""
    backoff_base_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    turn_max_seconds: float = Field(default=600.0, gt=0)
    """Wall time of one attempt of a turn."""
    turn_max_steps: int = Field(default=64, ge=1)
    """Model and tool calls in one turn, across all its agents."""
    max_lifetime_s: float = Field(default=8 * 3600.0, gt=0)
    """A turn still unfinished this long after it started ends as ``expired``."""
    idle_timeout_s: float = Field(default=900.0, gt=0)
    """A session without activity this long has its in-memory resources released (its state stays stored)."""
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long running turns may take to finish before they are checkpointed and released."""
    controls_refresh_s: float = Field(default=0.2, gt=0)
    """Kill switches are re-read before a step when the copy in memory is older than this."""
    event_retention_s: float = Field(default=86_400.0, gt=0)
    """Turn events (the SSE stream) are kept this long."""
    invoke_timeout_s: float = Field(default=300.0, gt=0)
    """How long the synchronous invoke endpoint waits for the reply."""


class RateLimitConfig(BaseModel):
    """A token bucket: ``per_minute`` calls on average, bursts of up to ``burst`` at once."""

    model_config = ConfigDict(extra="forbid")

    per_minute: float = Field(gt=0)
    burst: int | None = Field(default=None, ge=1)
    """Bucket size; default: ``per_minute`` rounded up (a minute's worth at once)."""

    @property
    def capacity(self) -> int:
        """The bucket size in effect."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.per_minute))


class RateLimitSettings(BaseModel):
    """Rate limits of tool calls (``[gateway.rate_limits]``); a call takes one token from every bucket it falls in."""

    model_config = ConfigDict(extra="forbid")

    tools: dict[str, RateLimitConfig] = Field(default_factory=dict)
    """Per tool name, across every bot and user."""
    bots: dict[str, RateLimitConfig] = Field(default_factory=dict)
    """Per bot, all its tool calls together."""
    per_user: RateLimitConfig | None = None
    """Every user's own bucket, all their tool calls together."""

    @property
    def longest_refill_s(self) -> float:
        """The longest any configured bucket takes to refill from empty (0 without limits): a bucket idle that long
        is full, the same as one that was never written."""
        configs = [*self.tools.values(), *self.bots.values(), *([self.per_user] if self.per_user else [])]
        return max((c.capacity / (c.per_minute / 60.0) for c in configs), default=0.0)


class GatewaySettings(BaseModel):
    """The tool gateway (``[gateway]`` in botfactory.toml): policies, timeouts, rate limits, approvals."""

    model_config = ConfigDict(extra="forbid")

    policies_dir: Path | None = None
    """Global Cedar policies (``*.cedar``) for every bot; default ``$BOTFACTORY_HOME/policies`` when it exists."""
    policy_modes: dict[str, Literal["enforce", "log-only"]] = Field(default_factory=dict)
    """Per bot; a bot not named here is ``enforce``d."""
    tool_timeout_s: float = Field(default=60.0, gt=0)
    """A tool call that declares no timeout of its own is stopped after this."""
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    redis_url: str | None = None
    """Keep rate-limit buckets in Redis (``redis://...``, needs the ``[redis]`` extra) instead of the database."""
    approval_timeout_s: float = Field(default=3600.0, gt=0)
    """An approval nobody decides within this expires; the turn goes on with "not approved"."""
    approvers: dict[str, list[str]] = Field(default_factory=dict)
    """Who may decide a bot's approvals from Slack or with a user's token: bot name (or ``"*"`` for every bot) ->
    principals, e.g. ``{support = ["slack:T1:U0ADMIN"]}``. API keys not limited to another bot and the CLI may always
    decide. Nobody approves their own request."""
    audit_retention_s: float = Field(default=90 * 86_400.0, gt=0)
    """Audit rows are kept this long; older ones are deleted hourly by the process that runs the worker."""
    tool_search_threshold: int = Field(default=24, ge=1)
    """An agent granted more tools than this is shown a ``find_tools`` tool instead of all of them."""


_JWT_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
"""Asymmetric JWS algorithms: an issuer's public keys can verify them but not sign with them."""


class OidcSettings(BaseModel):
    """Inbound JWT bearer tokens from an OpenID Connect issuer (``[oidc]`` in botfactory.toml).

    A token is accepted when the issuer's published keys (its JWKS) verify its signature and its ``iss``, ``aud``,
    ``exp`` and ``nbf`` claims, its client and its scopes pass the checks below. See docs/authentication.md.
    """

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(min_length=1)
    """The issuer URL exactly as tokens carry it in ``iss`` (e.g. ``https://idp.example.com/realms/acme``)."""
    audience: list[str] = Field(min_length=1)
    """Accepted ``aud`` values; a token must name at least one of them (usually this server's client id)."""
    jwks_url: str | None = None
    """Where the issuer's keys are; ``None``: ``jwks_uri`` of ``{issuer}/.well-known/openid-configuration``."""
    allowed_clients: list[str] = Field(default_factory=list)
    """Client ids (``azp`` or ``client_id`` claim) that may call; empty: any client of the issuer."""
    required_scopes: list[str] = Field(default_factory=list)
    """Scopes every token must carry (space-separated ``scope`` claim, or an ``scp`` list)."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"], min_length=1)
    """Signature algorithms accepted; only asymmetric ones (never ``none`` or ``HS*``)."""
    jwks_cache_s: float = Field(default=600.0, gt=0)
    """How long fetched keys are used before they are fetched again."""
    jwks_min_refresh_s: float = Field(default=30.0, ge=0)
    """A token signed with an unknown key (``kid``) refetches the keys at most this often (key rotation), so a flood
    of made-up key ids cannot turn into a flood of requests to the issuer."""
    leeway_s: float = Field(default=30.0, ge=0, le=600)
    """Clock skew allowed when checking ``exp``, ``nbf`` and ``iat``."""
    user_claim: str = Field(default="sub", min_length=1)
    """The claim naming the user; the user id is ``oidc:<issuer host and path>:<value>``."""
    groups_claim: str = Field(default="groups", min_length=1)
    """The claim listing the user's groups (a list of strings, or one string)."""
    bot: str | None = None
    """The one bot JWT callers may use; ``None``: every bot."""

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        refused = [alg for alg in algorithms if alg not in _JWT_ALGORITHMS]
        if refused:
            accepted = ", ".join(sorted(_JWT_ALGORITHMS))
            raise ValueError(
                f"algorithm(s) {', '.join(refused)} cannot be accepted: 'none' is unsigned and HS* are signed with a "
                f"shared secret, not the issuer's public keys; use some of {accepted}"
            )
        return algorithms


class OAuthClientConfig(BaseModel):
    """An OAuth2 client for outbound calls (``[oauth_clients.<name>]`` in botfactory.toml).

    Tools declaring ``CredentialRef(kind="oauth_client", secret="<name>")`` get an access token obtained with the
    client-credentials grant, cached until shortly before it expires. See docs/credentials.md.
    """

    model_config = ConfigDict(extra="forbid")

    token_url: str = Field(min_length=1)
    """The provider's token endpoint, e.g. ``https://idp.example.com/oauth2/token``."""
    client_id: str = Field(min_length=1)
    client_secret: str | None = None
    """The vault entry (platform-wide) holding the client secret; default ``oauth/<name>``. Never the secret itself."""
    scopes: list[str] = Field(default_factory=list)
    """Scopes requested with each token (sent space-separated); empty: the provider's default."""
    audience: str | None = None
    """Sent as ``audience`` for providers that want one (Auth0 and the like)."""
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    """How the client authenticates: HTTP Basic (the default), or ``client_id``/``client_secret`` in the form."""
    timeout_s: float = Field(default=10.0, gt=0)
    """How long a token request may take."""


DEFAULT_SLACK_THINKING: str = ":hourglass_flowing_sand: thinking…"


class TracingSettings(BaseModel):
    """``[tracing]``: where spans go and what they may contain (see docs/tracing.md)."""

    model_config = ConfigDict(extra="forbid")

    otlp_endpoint: str | None = None
    """OTLP/HTTP collector base URL (e.g. ``http://127.0.0.1:4318``; spans go to ``/v1/traces``); unset: no export."""
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with every export (e.g. a collector's API key)."""
    store_spans: bool = True
    """Keep spans in botfactory's own database for the console's waterfalls."""
    retention_days: float = Field(default=7.0, gt=0)
    """Stored spans older than this are deleted by the cleanup job."""
    record_content: bool = False
    """Record prompts and completions on spans for every bot; a bot can opt in on its own (``record_content``)."""
    service_name: str = "botfactory"
    provider: Literal["botfactory", "sdk"] = "botfactory"
    """The tracer provider installed when none is: ``botfactory`` records spans with botfactory's own implementation
    of the OpenTelemetry API (a few µs per span); ``sdk`` with the OpenTelemetry SDK's (its samplers and limits,
    configured by ``OTEL_*`` variables). A provider installed before botfactory starts is always kept."""
    export_process: bool = True
    """Send the OTLP export, and where it may write the span store (``botfactory worker``; every process on
    PostgreSQL), from a child process, so redaction, span rows and OTLP encoding do not take the turns' CPU;
    ``false``: threads of the process do it."""


class MetricsSettings(BaseModel):
    """``[metrics]``: the Prometheus series (see docs/metrics.md)."""

    model_config = ConfigDict(extra="forbid")

    per_user_labels: bool = True
    """Label token and cost series with the user id; turn off when users are many or their ids are sensitive."""
    worker_port: int | None = Field(default=None, ge=1, le=65535)
    """``botfactory worker`` serves its own ``GET /metrics`` (API key required) on this port; unset: none."""


class AlertRule(BaseModel):
    """One ``[[alerts.rules]]`` entry: a condition evaluated continuously (see docs/alerts.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    kind: Literal["ttft", "spend", "tool_errors", "safety"]
    severity: Literal["warning", "critical"] = "warning"
    bot: str | None = None
    """Only this bot (``ttft``, ``spend``); ``None``: every bot."""
    tool: str | None = None
    """Only this tool (``tool_errors``); ``None``: every tool."""
    threshold_s: float | None = Field(default=None, gt=0)
    """``ttft``: time to first token above this (p95 over ``window_s``) raises the alert."""
    daily_budget: float | None = Field(default=None, ge=0)
    """``spend``: a bot's spend today above this raises the alert."""
    baseline_factor: float | None = Field(default=None, gt=1)
    """``spend``: a bot's spend today above this many times its average day of the last 7 raises the alert."""
    error_rate: float | None = Field(default=None, gt=0, le=1)
    """``tool_errors``: the share of a tool's calls over ``window_s`` that failed, above which it is throttled."""
    min_calls: int = Field(default=10, ge=1)
    """``tool_errors``: fewer calls than this in the window never raise the alert."""
    throttle_s: float = Field(default=300.0, ge=0)
    """``tool_errors``: how long the tool is refused once the alert fires (0: alert only)."""
    max_denials: int = Field(default=3, ge=1)
    """``safety``: a session whose tool calls were denied by policy this many times within ``window_s`` is
    quarantined."""
    screen_messages: bool = True
    """``safety``: screen inbound messages for prompt-injection and exfiltration phrasing as they are enqueued."""
    window_s: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _has_its_threshold(self) -> AlertRule:
        needed = {
            "ttft": ("threshold_s", self.threshold_s is not None),
            "spend": (
                "daily_budget or baseline_factor",
                self.daily_budget is not None or self.baseline_factor is not None,
            ),
            "tool_errors": ("error_rate", self.error_rate is not None),
        }.get(self.kind)
        if needed is not None and not needed[1]:
            raise ValueError(f"alert rule {self.name!r} of kind {self.kind!r} needs {needed[0]}; set it in the rule")
        return self


class AlertSettings(BaseModel):
    """``[alerts]``: the rules, how often they are evaluated, and where alerts go besides the log and console."""

    model_config = ConfigDict(extra="forbid")

    rules: list[AlertRule] = Field(default_factory=list)
    interval_s: float = Field(default=30.0, gt=0)
    webhook_url: str | None = None
    """POSTed a JSON body (``{"text": ...}``, Slack incoming-webhook compatible) for every new alert."""
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    """How long one webhook POST may take; a failing webhook is logged, never retried."""

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[AlertRule]) -> list[AlertRule]:
        names = [rule.name for rule in rules]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"alert rule names must be unique; {', '.join(doubled)} appear more than once")
        return rules


class ConsoleSettings(BaseModel):
    """``[console]``: the web console served at ``/``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    login_hours: float = Field(default=12.0, gt=0)
    """How long a console login lasts."""


class SlackAppConfig(BaseModel):
    """One Slack app (``[slack_apps.<name>]`` in botfactory.toml): its secrets, its bot and where it answers.

    A request is routed to the app whose ``api_app_id`` it names, else to the app whose signing secret verifies it.
    """

    model_config = ConfigDict(extra="forbid")

    signing_secret: SecretStr
    bot_token: SecretStr
    bot: str = "support"
    channels: list[str] = Field(default_factory=list)
    """Slack channel ids the bot answers in; empty: every channel it is a member of."""
    api_url: str = "https://slack.com/api/"
    api_app_id: str | None = None
    """The app's id (``A0...``); requests naming it go to this app without trying other secrets."""
    team_id: str | None = None
    """Only requests from this workspace are taken."""
    thinking_text: str | None = DEFAULT_SLACK_THINKING
    """Posted in the thread when a turn starts and replaced by the reply; ``None`` or empty turns it off."""


def _default_models() -> dict[str, ModelConfig]:
    return {
        "large": ModelConfig(provider="local", model="qwen2.5-coder-1.5b-instruct-q4_k_m"),
        "small": ModelConfig(provider="local", model="qwen2.5-coder-0.5b-instruct-q4_k_m"),
    }


def default_home() -> Path:
    """``BOTFACTORY_HOME`` or ``~/.botfactory``."""
    return Path(os.environ.get("BOTFACTORY_HOME") or Path.home() / ".botfactory").expanduser()


def find_config_file(home: Path | None = None) -> Path | None:
    """The configuration file in effect, or ``None`` when there is none."""
    explicit = os.environ.get("BOTFACTORY_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"BOTFACTORY_CONFIG points to {path}, which does not exist; create it or unset the variable"
            )
        return path
    for candidate in (Path.cwd() / "botfactory.toml", (home or default_home()) / "botfactory.toml"):
        if candidate.is_file():
            return candidate
    return None


class Settings(BaseSettings):
    """Every setting botfactory reads. Build it with :meth:`Settings.load`."""

    model_config = SettingsConfigDict(
        env_prefix="BOTFACTORY_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///$BOTFACTORY_HOME/botfactory.db``."""
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    auth_cache_s: float = Field(default=10.0, ge=0, le=300)
    """How long a server process trusts an API key it has checked; a revoked key stops working within this."""
    master_key: SecretStr | None = None
    """The secrets vault's master key (``BOTFACTORY_MASTER_KEY``): base64url of 32 bytes. Unset: ``master_key_file``."""
    master_key_file: Path | None = None
    """Where the vault's master key is kept when ``master_key`` is unset; default ``$BOTFACTORY_HOME/master.key``."""

    models: dict[str, ModelConfig] = Field(default_factory=_default_models)
    local_model_port_base: int = Field(default=8091, ge=1024, le=65000)
    model_start_timeout_s: float = Field(default=180.0, gt=0)

    bots_dir: Path | None = None
    """Extra directory of user bots (``*.py`` files defining ``bot = Bot(...)``)."""

    max_message_chars: int = Field(default=16_000, ge=1)
    max_request_bytes: int = Field(default=256 * 1024, ge=1024)

    turn_max_tokens: int = Field(default=32_000, ge=1)

    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    oidc: OidcSettings | None = None
    """Accept JWT bearer tokens from this OpenID Connect issuer besides API keys; ``None``: API keys only."""
    oauth_clients: dict[str, OAuthClientConfig] = Field(default_factory=dict)
    """OAuth2 clients whose client-credentials tokens tools may use, by name (see docs/credentials.md)."""
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Price per model alias; a model without an entry costs 0 (local models) but still counts tokens."""

    github_base_url: str | None = None
    """GitHub REST API base URL. Unset: ``botfactory up`` serves a local demo stand-in."""
    github_org: str = "example-org"
    github_token: SecretStr | None = None

    slack_signing_secret: SecretStr | None = None
    """The Slack app's signing secret; with ``slack_bot_token`` it turns on ``POST /slack/events``."""
    slack_bot_token: SecretStr | None = None
    """The Slack app's bot token (``xoxb-``), used only to post replies."""
    slack_bot: str = "support"
    """The bot that answers Slack messages."""
    slack_channels: list[str] = Field(default_factory=list)
    """Slack channel ids the bot answers in; empty: every channel it is a member of."""
    slack_api_url: str = "https://slack.com/api/"
    """Slack Web API root; point it at a stand-in for demos and tests."""
    slack_thinking_text: str | None = DEFAULT_SLACK_THINKING
    """The single app's "thinking…" placeholder, replaced in place by the reply; empty turns it off."""
    slack_apps: dict[str, SlackAppConfig] = Field(default_factory=dict)
    """More Slack apps, by name; the flat ``slack_*`` settings are the app named ``default``."""

    agentcore_bot: str = "support"
    """The bot that answers AgentCore-contract calls (``POST /invocations``) without a ``...-Custom-Bot`` header."""
    agentcore_port: int | None = Field(default=None, ge=1, le=65535)
    """Also serve only ``/invocations`` and ``/ping`` on this port (same host), as an AgentCore runtime does."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = find_config_file()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Resolve settings from every layer; ``overrides`` (CLI flags) win. ``None`` values are ignored."""
        given = {key: value for key, value in overrides.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
            raise ConfigError(
                f"invalid settings ({problems}); fix botfactory.toml or the BOTFACTORY_* variables"
            ) from None

    @property
    def resolved_database_url(self) -> str:
        """The database URL in effect."""
        return self.database_url or f"sqlite:///{self.home / 'botfactory.db'}"

    @property
    def resolved_master_key_file(self) -> Path:
        """The vault's master key file in effect (used when ``master_key`` is unset)."""
        return (self.master_key_file or self.home / "master.key").expanduser()

    @property
    def models_dir(self) -> Path:
        """Where assembled local model files live."""
        return self.home / "models"

    def model(self, alias: str) -> ModelConfig:
        """The configuration of a model alias."""
        try:
            return self.models[alias]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ConfigError(
                f"unknown model alias '{alias}' (configured: {known}); add [models.{alias}] to botfactory.toml"
            ) from None

    def price(self, alias: str) -> ModelPrice:
        """The price of a model alias; free when the table has no entry."""
        return self.prices.get(alias) or _FREE

    def masked(self) -> dict[str, Any]:
        """The resolved settings as plain data with every secret replaced by ``***``."""
        data = self.model_dump(mode="json")
        data["database_url"] = _mask_url(self.resolved_database_url)
        return data


_FREE = ModelPrice()


def _mask_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
