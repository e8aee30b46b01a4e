"""What the gateway knows about a tool, whatever its source: a Python ``@tool``, an MCP server's tool, an OpenAPI
operation, an agent, a remote A2A agent.

Every source produces objects that satisfy :class:`GatewayTool`; the gateway validates, authorizes, rate-limits,
injects credentials, executes (calling :meth:`GatewayTool.invoke` under the tool's timeout) and audits them all
the same way. A :class:`ToolSource` is a set of tools discovered at start (an MCP server, an OpenAPI document)
and refreshed while the platform runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["CallContext", "CredentialKind", "CredentialRef", "GatewayTool", "SideEffect", "ToolSource"]

SideEffect = Literal["read", "write"]
"""``read`` tools only look; ``write`` tools change something outside (policies and approvals care)."""

CredentialKind = Literal["secret", "oauth_client", "user_token"]
"""How a credential is obtained at call time:

- ``secret``: a platform secret from the vault (``botfactory secrets set NAME``).
- ``oauth_client``: an OAuth2 client-credentials access token, fetched from the provider's token endpoint with the
  client id and secret from the vault, cached until it expires.
- ``user_token``: the calling user's own token, stored in the vault under their principal; a call made for
  another user (or for nobody) never receives it.
"""


@dataclass(frozen=True, kw_only=True)
class CredentialRef:
    """A credential a tool declares; the gateway injects its value at call time, never showing it to the model.

    Attributes:
        name: The key the tool finds the value under in :attr:`CallContext.credentials`.
        kind: See :data:`CredentialKind`.
        secret: The vault entry (``secret`` and ``user_token``) or OAuth client (``oauth_client``) to use;
            defaults to ``name``.
    """

    name: str
    kind: CredentialKind = "secret"
    secret: str | None = None

    @property
    def source(self) -> str:
        """The vault entry or OAuth client the value comes from."""
        return self.secret or self.name


@dataclass(frozen=True, kw_only=True)
class CallContext:
    """What a tool is told about the call it executes; never shown to the model.

    Attributes:
        session_id: The conversation.
        turn_id: The turn making the call.
        bot: The bot the turn runs.
        agent_path: The calling agent, e.g. ``support/github``.
        user_id: The principal the call is made for (``slack:T1:U2``), when the channel knows one.
        idempotency_key: Stable for this call across retries and resumed turns; pass it to external APIs.
        credentials: The values of the credentials the tool declared, by :attr:`CredentialRef.name`.
        resources: Per-session objects kept in memory between turns on this worker (see ``ToolContext``).
    """

    session_id: str
    turn_id: str
    bot: str
    agent_path: str
    user_id: str | None
    idempotency_key: str
    credentials: Mapping[str, str] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class GatewayTool(Protocol):
    """A tool as the gateway sees it.

    Attributes:
        name: Unique among the tools of the agent that uses it; what the model calls and policies name
            (``Tool::"<name>"``).
        description: What the model is told the tool does.
        parameters: JSON schema (an object) of the arguments; the gateway validates every call against it.
        side_effect: ``read`` or ``write``.
        timeout_s: The call is stopped after this many seconds; ``None``: no limit but the turn's own.
        credentials: What the gateway injects at call time.
        needs_approval: A person must approve each call before it runs.
        owner: Who answers for the tool (a team, a server name); visible to policies.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> dict[str, Any]: ...

    @property
    def side_effect(self) -> SideEffect: ...

    @property
    def timeout_s(self) -> float | None: ...

    @property
    def credentials(self) -> Sequence[CredentialRef]: ...

    @property
    def needs_approval(self) -> bool: ...

    @property
    def owner(self) -> str: ...

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        """Run the call with already-validated arguments; return text or JSON-serialisable data.

        Raise :class:`~botfactory.errors.ToolError` (or a subclass) for a failure the model should read; the
        gateway turns any other exception into a short error too.
        """
        ...


@runtime_checkable
class ToolSource(Protocol):
    """A set of tools discovered from somewhere (an MCP server, an OpenAPI document) rather than written in Python.

    The platform calls :meth:`start` once before serving and :meth:`aclose` when it stops. :attr:`tools` is the
    current list, replaced by :meth:`refresh`.
    """

    @property
    def name(self) -> str: ...

    @property
    def tools(self) -> Sequence[GatewayTool]: ...

    async def start(self) -> None:
        """Connect and discover the tools.

        Raises:
            ToolUnavailableError: the source cannot be reached; the message says what to check.
        """
        ...

    async def refresh(self) -> None:
        """Discover the tools again (a server may add or remove some while it runs)."""
        ...

    async def aclose(self) -> None:
        """Disconnect; idempotent."""
        ...
