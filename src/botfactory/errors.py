"""The whole botfactory exception tree.

Every error has a stable ``code`` (used by the HTTP API, the CLI exit status and the console), an
``http_status`` for the API, and a message that says what to do next. Messages never contain
secrets or prompt text.

    BotfactoryError
    ├── ConfigError                 settings are missing or invalid
    │   ├── MissingExtraError       an optional dependency group is not installed
    │   └── PolicyError             a Cedar policy file does not parse or fails schema validation
    ├── InvalidInputError           a caller sent something we cannot accept (4xx)
    │   ├── PayloadTooLargeError
    │   └── InvalidFieldError       one named field of a request is missing, mistyped or out of range
    ├── UnauthenticatedError        the request carries no valid API key (401)
    ├── ForbiddenError              the caller's key does not allow what it asked for (403)
    ├── NotFoundError               a named thing does not exist
    │   ├── BotNotFoundError
    │   ├── SessionNotFoundError
    │   ├── ModelNotFoundError      no bot or model alias has the name an OpenAI-compatible request gave as ``model``
    │   ├── ApiKeyNotFoundError
    │   └── SecretNotFoundError     no secret in the vault has that name (for that owner)
    ├── ConflictError               the request conflicts with the current state (409)
    │   ├── SessionBusyError        a bot with the ``reject`` policy is already busy on the session
    │   └── SessionQuarantinedError a safety alert quarantined the session: no new messages until released
    ├── SecretUnreadableError       a stored secret cannot be decrypted: another master key, or altered data
    ├── StoreError                  the database failed or is at the wrong schema version
    │   └── LeaseLostError          another worker took over the session this worker was running
    ├── ExternalAgentError          an external agent app (AgentCore contract) failed or did not start (retryable)
    │   └── ExternalAgentBusyError  it stayed ``HealthyBusy`` longer than the agent's ``busy_timeout_s``
    ├── ModelError                  inference failed
    │   ├── ModelUnavailableError   the model server is down or unreachable (retryable)
    │   ├── ModelResponseError      the model answered with something unusable
    │   └── ModelInstallError       model files are missing or fail verification
    ├── ToolError                   a tool call failed
    │   ├── ToolArgumentsError      arguments did not match the tool's schema
    │   ├── ToolNotFoundError
    │   ├── ToolDisabledError       a kill switch turned the tool off
    │   ├── ToolDeniedError         the gateway's policy denied the call (403)
    │   ├── ToolRateLimitedError    the tool's, bot's or user's rate limit is used up (429)
    │   ├── ToolThrottledError      an alert throttled the tool for its error rate (503)
    │   ├── ToolTimeoutError        the call ran past the tool's timeout
    │   ├── ToolUnavailableError    the tool's server (MCP, OpenAPI, A2A) failed or is unreachable
    │   ├── CredentialError         a credential the tool declares could not be provided
    │   └── CredentialRejectedError the service the tool called refused its credential (HTTP 401)
    ├── ApprovalPendingError        a tool call waits for a person's approval: the turn pauses
    ├── LimitExceededError          a per-turn limit was reached
    │   ├── StepLimitError          an agent's steps (a sub-agent's is reported to its caller)
    │   ├── TokenLimitError         the turn's tokens
    │   ├── TimeLimitError          the turn's wall time or the run's lifetime
    │   ├── BudgetExceededError     a token or spend budget of the bot, user, session or day
    │   └── KillSwitchError         an operator switched the bot or agent off
    └── KnowledgeError              knowledge base ingest or search failed
"""

from __future__ import annotations

__all__ = [
    "ApiKeyNotFoundError",
    "ApprovalPendingError",
    "BotNotFoundError",
    "BotfactoryError",
    "BudgetExceededError",
    "ConfigError",
    "ConflictError",
    "CredentialError",
    "CredentialRejectedError",
    "ExternalAgentBusyError",
    "ExternalAgentError",
    "ForbiddenError",
    "InvalidFieldError",
    "InvalidInputError",
    "KillSwitchError",
    "KnowledgeError",
    "LeaseLostError",
    "LimitExceededError",
    "MissingExtraError",
    "ModelError",
    "ModelInstallError",
    "ModelNotFoundError",
    "ModelResponseError",
    "ModelUnavailableError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PolicyError",
    "SecretNotFoundError",
    "SecretUnreadableError",
    "SessionBusyError",
    "SessionNotFoundError",
    "SessionQuarantinedError",
    "StepLimitError",
    "StoreError",
    "TimeLimitError",
    "TokenLimitError",
    "ToolArgumentsError",
    "ToolDeniedError",
    "ToolDisabledError",
    "ToolError",
    "ToolNotFoundError",
    "ToolRateLimitedError",
    "ToolThrottledError",
    "ToolTimeoutError",
    "ToolUnavailableError",
    "UnauthenticatedError",
]


class BotfactoryError(Exception):
    """Root of every error botfactory raises on purpose.

    Attributes:
        code: Stable machine-readable identifier, e.g. ``bot_not_found``.
        http_status: Status the HTTP API answers with.
        exit_code: Status the CLI exits with.
        retryable: Whether repeating the same operation later may succeed.
    """

    code: str = "botfactory_error"
    http_status: int = 500
    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def to_dict(self) -> dict[str, str]:
        """The error as the JSON body the HTTP API returns."""
        return {"code": self.code, "message": self.message}


class ConfigError(BotfactoryError):
    """Settings are missing or invalid."""

    code = "config_error"
    exit_code = 2


class MissingExtraError(ConfigError):
    """An optional dependency group is needed but not installed."""

    code = "missing_extra"

    def __init__(self, extra: str, purpose: str) -> None:
        super().__init__(f"{purpose} needs the '{extra}' extra: pip install 'botfactory[{extra}]'")
        self.extra = extra


class PolicyError(ConfigError):
    """A Cedar policy file does not parse, fails validation against the schema, or breaks the platform's rules.

    Raised at load, so a broken policy stops the start instead of allowing everything. The message names the file,
    the line of the policy and Cedar's own message.
    """

    code = "policy_invalid"


class InvalidInputError(BotfactoryError):
    """A caller sent input that cannot be accepted."""

    code = "invalid_input"
    http_status = 400
    exit_code = 2


class PayloadTooLargeError(InvalidInputError):
    """A request body or message exceeds the configured maximum."""

    code = "payload_too_large"
    http_status = 413


class UnauthenticatedError(BotfactoryError):
    """The request carries no API key, or one that is unknown or revoked."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 6


class ForbiddenError(BotfactoryError):
    """The caller is authenticated but its key does not allow this, e.g. a key scoped to another bot."""

    code = "forbidden"
    http_status = 403
    exit_code = 6


class InvalidFieldError(InvalidInputError):
    """One named field of a request is missing, has the wrong type or is out of range.

    Attributes:
        param: The field, as a dotted path (``messages.0.content``), for APIs that report it (OpenAI's ``param``).
    """

    code = "invalid_field"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class NotFoundError(BotfactoryError):
    """A named thing does not exist."""

    code = "not_found"
    http_status = 404
    exit_code = 3


class BotNotFoundError(NotFoundError):
    """No bot with that name is loaded."""

    code = "bot_not_found"


class SessionNotFoundError(NotFoundError):
    """No session with that id exists."""

    code = "session_not_found"


class ModelNotFoundError(NotFoundError):
    """No bot (``/v1/chat/completions``) or model alias (``/v1/inference/...``) has the requested ``model``."""

    code = "model_not_found"


class ApiKeyNotFoundError(NotFoundError):
    """No API key with that id exists."""

    code = "api_key_not_found"


class SecretNotFoundError(NotFoundError):
    """No secret in the vault has that name for that owner."""

    code = "secret_not_found"


class SecretUnreadableError(BotfactoryError):
    """A stored secret cannot be decrypted with the master key in use.

    Either it was encrypted under another master key (restore that key, or set the secret again) or its stored
    bytes were altered or copied from another name (set it again). The message names the secret, never its value.
    """

    code = "secret_unreadable"


class ConflictError(BotfactoryError):
    """The request conflicts with the current state of what it names."""

    code = "conflict"
    http_status = 409
    exit_code = 5


class SessionBusyError(ConflictError):
    """The session's bot rejects new messages while it is still working on earlier ones."""

    code = "session_busy"


class SessionQuarantinedError(ConflictError):
    """A safety alert quarantined the session: it takes no new messages and runs no turns until an operator
    releases it (``botfactory sessions release ID`` or ``POST /v1/sessions/{id}/release``)."""

    code = "session_quarantined"


class StoreError(BotfactoryError):
    """The database failed or its schema is not at the expected version."""

    code = "store_error"
    http_status = 503


class LeaseLostError(StoreError):
    """This worker's lease on a session expired and another worker took the session over.

    The worker must stop the turn without writing anything more: the new holder resumes it.
    """

    code = "lease_lost"
    retryable = True


class ExternalAgentError(BotfactoryError):
    """An external agent app (one that implements the AgentCore runtime contract) failed, or could not be started.

    Retryable: the turn's attempt is given back and retried (a command-started app is restarted first).
    """

    code = "external_agent_error"
    http_status = 502
    retryable = True


class ExternalAgentBusyError(ExternalAgentError):
    """An external agent app answered ``HealthyBusy`` to every ``/ping`` for longer than its ``busy_timeout_s``."""

    code = "external_agent_busy"
    http_status = 503


class ModelError(BotfactoryError):
    """A model call failed."""

    code = "model_error"
    http_status = 502


class ModelUnavailableError(ModelError):
    """The model server is down, overloaded or unreachable."""

    code = "model_unavailable"
    http_status = 503
    retryable = True


class ModelResponseError(ModelError):
    """The model answered with something that cannot be used."""

    code = "model_response_invalid"


class ModelInstallError(ModelError):
    """Model files are missing or fail size/sha256 verification."""

    code = "model_install"
    exit_code = 4


class ToolError(BotfactoryError):
    """A tool call failed; the message is shown to the model as the tool's error."""

    code = "tool_error"


class ToolArgumentsError(ToolError):
    """The arguments of a tool call do not match the tool's JSON schema."""

    code = "tool_arguments_invalid"
    http_status = 400


class ToolNotFoundError(ToolError):
    """The model asked for a tool the agent does not have."""

    code = "tool_not_found"


class ToolDisabledError(ToolError):
    """An operator turned the tool (or the sub-agent called as a tool) off with a kill switch."""

    code = "tool_disabled"


class ToolDeniedError(ToolError):
    """The gateway's policy denied a tool call; the model sees the reason and the turn goes on."""

    code = "tool_denied"
    http_status = 403


class ToolRateLimitedError(ToolError):
    """A tool call found its tool's, bot's or user's rate limit used up.

    Attributes:
        retry_after_s: When a token will be available again.
    """

    code = "tool_rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ToolThrottledError(ToolError):
    """A ``tool_errors`` alert throttled the tool: its calls fail fast until the throttle ends.

    Attributes:
        retry_after_s: When the throttle ends.
    """

    code = "tool_throttled"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ToolTimeoutError(ToolError):
    """A tool call ran past its tool's timeout and was stopped."""

    code = "tool_timeout"
    http_status = 504


class ToolUnavailableError(ToolError):
    """A tool's server (MCP, OpenAPI, A2A) could not be reached or failed mid-call."""

    code = "tool_unavailable"
    http_status = 502


class CredentialError(ToolError):
    """A credential a tool declares could not be provided (missing secret, token endpoint refused)."""

    code = "credential_unavailable"
    http_status = 502


class CredentialRejectedError(ToolError):
    """The service a tool called refused the credential the gateway gave it (HTTP 401): revoked, expired early or
    wrong. The gateway forgets the credential (a new OAuth token is fetched) and retries the call once."""

    code = "credential_rejected"
    http_status = 502


class ApprovalPendingError(BotfactoryError):
    """A tool call waits for a person's approval: the turn pauses (durably, holding no worker) until it is decided.

    Not an error of the call: the runtime parks the turn and resumes it when the request is decided or expires.

    Attributes:
        approval_id: The request.
        expires_at: When it expires if nobody decides (epoch seconds).
    """

    code = "approval_pending"
    http_status = 202

    def __init__(self, message: str, *, approval_id: str, expires_at: float) -> None:
        super().__init__(message)
        self.approval_id = approval_id
        self.expires_at = expires_at


class LimitExceededError(BotfactoryError):
    """A per-turn limit was reached; the turn stops with a clear message.

    Attributes:
        ends_turn: The whole turn stops. When ``False`` (a sub-agent's step limit) the calling agent gets the
            error as the tool's result and goes on.
    """

    code = "limit_exceeded"
    http_status = 429
    ends_turn = True

    def __init__(self, message: str, *, ends_turn: bool | None = None) -> None:
        super().__init__(message)
        if ends_turn is not None:
            self.ends_turn = ends_turn


class StepLimitError(LimitExceededError):
    """An agent used its maximum number of steps without a final answer."""

    code = "step_limit"
    ends_turn = False


class TokenLimitError(LimitExceededError):
    """A turn used its maximum number of tokens."""

    code = "token_limit"


class TimeLimitError(LimitExceededError):
    """A turn ran longer than its wall-time limit, or its run outlived the maximum lifetime."""

    code = "time_limit"


class BudgetExceededError(LimitExceededError):
    """A token or spend budget (per bot, user, session or day) would be exceeded by the next model call."""

    code = "budget_exceeded"


class KillSwitchError(LimitExceededError):
    """An operator switched the bot or the agent off; turns stop at their next step."""

    code = "kill_switch"
    http_status = 503


class KnowledgeError(BotfactoryError):
    """Knowledge base ingest or search failed."""

    code = "knowledge_error"
