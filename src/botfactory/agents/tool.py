"""Tools: Python functions a model may call, with a JSON schema derived from type hints and docstring."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, overload

import anyio.to_thread
import jsonschema

from botfactory.errors import ToolArgumentsError
from botfactory.gateway import CallContext, CredentialRef, SideEffect
from botfactory.messages import ToolSpec

__all__ = ["Tool", "ToolContext", "check_arguments", "tool"]

_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool may know about the call it serves; never shown to the model.

    Declare a parameter annotated ``ToolContext`` to receive it.

    Attributes:
        session_id: The conversation the turn belongs to.
        turn_id: The turn making the call.
        user_id: The human the agent acts for, when the channel knows it.
        agent_path: The calling agent, e.g. ``support/github``.
        idempotency_key: Stable for this call across retries and resumed turns; pass it to external APIs.
        credentials: The values of the credentials the tool declared (``@tool(credentials=[...])``), by name.
            Never return them or put them in an error message: the gateway masks them if you do.
        bot: The bot the turn runs.
        resources: In-memory objects kept for the session between its turns on this worker (a client, a
            cache). Released after the session has been idle for ``runtime.idle_timeout_s``: store a value
            with an ``aclose()`` or ``close()`` method and it is called then. Never hold state here that must
            survive a crash; the store is for that.
    """

    session_id: str
    turn_id: str
    user_id: str | None
    agent_path: str
    idempotency_key: str
    resources: dict[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    bot: str = ""


class Tool:
    """A callable the model can use: name, description, argument schema, and the function itself.

    What the gateway needs to know about it (see :class:`botfactory.gateway.GatewayTool`):

    Args:
        side_effect: ``read`` (default) or ``write``; policies and approvals can tell them apart.
        timeout_s: The call is stopped after this; ``None``: the gateway's default (``gateway.tool_timeout_s``).
        credentials: What the gateway injects into ``ToolContext.credentials`` at call time.
        needs_approval: A person must approve every call before it runs.
        owner: Who answers for the tool (visible to policies as ``resource.owner``).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        side_effect: SideEffect = "read",
        timeout_s: float | None = None,
        credentials: Sequence[CredentialRef] = (),
        needs_approval: bool = False,
        owner: str = "",
    ) -> None:
        if side_effect not in ("read", "write"):
            raise ValueError(f"side_effect must be 'read' or 'write', not {side_effect!r}")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.func = func
        self.side_effect: SideEffect = side_effect
        self.timeout_s = timeout_s
        self.credentials: tuple[CredentialRef, ...] = tuple(credentials)
        self.needs_approval = needs_approval
        self.owner = owner
        self.name = name or func.__name__
        if not _TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {_TOOL_NAME.pattern}")
        summary, arg_docs = _parse_docstring(inspect.getdoc(func) or "")
        self.description = description or summary
        if not self.description:
            raise ValueError(f"tool {self.name!r} needs a docstring or description: the model reads it")
        self.parameters, self._context_param = _schema_from_signature(func, arg_docs)
        self._validator = jsonschema.Draft202012Validator(self.parameters)
        self._is_async = inspect.iscoroutinefunction(func)

    @property
    def spec(self) -> ToolSpec:
        """What the model is told about this tool."""
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)

    def validate(self, arguments: dict[str, Any]) -> None:
        """Check arguments against the schema.

        Raises:
            ToolArgumentsError: listing every problem, phrased for the model to correct itself.
        """
        check_arguments(self.name, self._validator, arguments)

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Validate and run the tool; sync functions run in a worker thread."""
        self.validate(arguments)
        return await self._run(arguments, context)

    async def invoke(self, arguments: dict[str, Any], context: CallContext) -> Any:
        """Run the tool for the gateway, which has validated the arguments already."""
        tool_context = ToolContext(
            session_id=context.session_id,
            turn_id=context.turn_id,
            user_id=context.user_id,
            agent_path=context.agent_path,
            idempotency_key=context.idempotency_key,
            resources=context.resources,
            credentials=context.credentials,
            bot=context.bot,
        )
        return await self._run(arguments, tool_context)

    async def _run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        kwargs = dict(arguments)
        if self._context_param is not None:
            kwargs[self._context_param] = context
        if self._is_async:
            return await typing.cast(Callable[..., Awaitable[Any]], self.func)(**kwargs)
        return await anyio.to_thread.run_sync(lambda: self.func(**kwargs))

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r})"


def check_arguments(tool_name: str, validator: jsonschema.protocols.Validator, arguments: dict[str, Any]) -> None:
    """Validate arguments and raise one :class:`ToolArgumentsError` listing every problem."""
    problems = sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))
    if problems:
        details = "; ".join(f"{'/'.join(map(str, p.absolute_path)) or 'arguments'}: {p.message}" for p in problems)
        raise ToolArgumentsError(f"invalid arguments for tool '{tool_name}': {details}")


@overload
def tool(func: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    side_effect: SideEffect = "read",
    timeout_s: float | None = None,
    credentials: Sequence[CredentialRef] = (),
    needs_approval: bool = False,
    owner: str = "",
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    side_effect: SideEffect = "read",
    timeout_s: float | None = None,
    credentials: Sequence[CredentialRef] = (),
    needs_approval: bool = False,
    owner: str = "",
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a function into a :class:`Tool`.

    The JSON schema comes from the type hints; the description from the docstring's first paragraph and
    each argument's description from its ``Args:`` section. Use as ``@tool`` or
    ``@tool(name=..., side_effect="write", credentials=[CredentialRef(name="github", secret="github_token")])``.
    """
    if func is not None:
        return Tool(func)
    return lambda f: Tool(
        f,
        name=name,
        description=description,
        side_effect=side_effect,
        timeout_s=timeout_s,
        credentials=credentials,
        needs_approval=needs_approval,
        owner=owner,
    )


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into its summary and per-argument descriptions."""
    sections = re.split(r"\n\s*\n", doc.strip(), maxsplit=1) if doc else [""]
    summary_lines: list[str] = []
    for line in doc.splitlines():
        if re.match(r"^\s*(Args|Arguments|Returns|Raises|Yields|Examples?):\s*$", line):
            break
        summary_lines.append(line)
    summary = "\n".join(summary_lines).strip() or sections[0]
    args: dict[str, str] = {}
    match = re.search(r"^\s*(?:Args|Arguments):\s*\n((?:[ \t]+.*\n?)+)", doc, flags=re.MULTILINE)
    if match:
        current: str | None = None
        for line in match.group(1).splitlines():
            item = re.match(r"^\s{2,8}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if item:
                current = item.group(1)
                args[current] = item.group(2).strip()
            elif current and line.strip():
                args[current] = f"{args[current]} {line.strip()}"
    return summary, args


def _schema_from_signature(func: Callable[..., Any], arg_docs: dict[str, str]) -> tuple[dict[str, Any], str | None]:
    hints = get_type_hints(func)
    properties: dict[str, Any] = {}
    required: list[str] = []
    context_param: str | None = None
    for param in inspect.signature(func).parameters.values():
        annotation = hints.get(param.name, Any)
        if annotation is ToolContext:
            context_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"tool {func.__name__!r}: *args/**kwargs cannot be described to a model")
        schema = _type_schema(annotation)
        if param.name in arg_docs:
            schema["description"] = arg_docs[param.name]
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        elif param.default is not None:
            schema["default"] = param.default
        properties[param.name] = schema
    schema_obj: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema_obj["required"] = required
    return schema_obj, context_param


_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type_schema(annotation: Any) -> dict[str, Any]:
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if annotation is Any:
        return {}
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        inner = _type_schema(options[0]) if len(options) == 1 else {"anyOf": [_type_schema(a) for a in options]}
        return {"anyOf": [inner, {"type": "null"}]} if len(options) < len(args) else inner
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set):
        item = args[0] if args else Any
        return {"type": "array", "items": _type_schema(item)}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    raise TypeError(f"cannot describe type {annotation!r} to a model; use str, int, float, bool, list, dict or Literal")
