"""The Cedar schema tool-call policies are validated against, and the typing of tool arguments.

Cedar schemas cannot declare open records (cedarpy 4.12.2 rejects ``additionalAttributes`` as an unsupported
feature), so ``context.arguments`` is a closed record whose attributes are the argument names the platform
declares (from the tools' JSON schemas), every one optional. A policy must test ``context.arguments has org``
before reading ``context.arguments.org``: the validator refuses an unguarded read, which is what keeps a
``forbid`` from silently erroring (and so not applying) on a call that lacks the argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from botfactory.errors import PolicyError

#: The argument types a policy can see, as Cedar schema types. Other JSON types are not visible to policies.
ARGUMENT_TYPES = ("String", "Long", "Bool", "Set<String>", "Set<Long>")

_JSON_TO_CEDAR = {"string": "String", "integer": "Long", "boolean": "Bool"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

_SCHEMA = """\
entity Bot;
entity Agent in [Bot];
entity User {{ groups: Set<String>, team?: String, channel?: String }};
entity Tool {{ side_effect: String, owner: String, needs_approval: Bool }};
type Session = {{ id: String, channel?: String, thread?: String }};
type Arguments = {{ {arguments} }};
action call appliesTo {{
  principal: [User],
  resource: [Tool],
  context: {{ bot: Bot, agent: Agent, arguments: Arguments, session: Session }}
}};
"""


def schema_text(argument_types: Mapping[str, str]) -> str:
    """The Cedar schema (human syntax) with ``context.arguments`` typed by ``argument_types``.

    Raises:
        PolicyError: An argument name is not a Cedar identifier or its type is not one of ``ARGUMENT_TYPES``.
    """
    fields = []
    for name, cedar_type in sorted(argument_types.items()):
        if not _IDENTIFIER.match(name):
            raise PolicyError(f"tool argument '{name}' cannot be named in a Cedar policy: use letters, digits, '_'")
        if cedar_type not in ARGUMENT_TYPES:
            raise PolicyError(f"tool argument '{name}' has type '{cedar_type}'; use one of {', '.join(ARGUMENT_TYPES)}")
        fields.append(f"{name}?: {cedar_type}")
    return _SCHEMA.format(arguments=", ".join(fields))


def argument_types_from_json_schemas(schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Merge the top-level properties of tools' JSON input schemas into argument types for ``PolicyEngine.load``.

    ``schemas`` maps a tool name to its input schema. Strings, integers, booleans and arrays of strings or
    integers become visible to policies; other properties (numbers, objects, nulls) are left out.

    Raises:
        PolicyError: Two tools declare one argument name with different types.
    """
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for tool, schema in sorted(schemas.items()):
        properties = schema.get("properties", {})
        for name, prop in sorted(properties.items()):
            cedar_type = _cedar_type(prop)
            if cedar_type is None or not _IDENTIFIER.match(name):
                continue
            if name in merged and merged[name] != cedar_type:
                raise PolicyError(
                    f"argument '{name}' is {merged[name]} in tool {owner[name]} but {cedar_type} in tool {tool}; "
                    "policies see one type per argument name: rename one of them"
                )
            merged[name] = cedar_type
            owner.setdefault(name, tool)
    return merged


def _cedar_type(prop: Mapping[str, Any]) -> str | None:
    """The Cedar type of one JSON-schema property: typed scalars, enums (``Literal``), optionals, arrays of them."""
    options = [o for o in prop.get("anyOf", ()) if isinstance(o, Mapping) and o.get("type") != "null"]
    if "anyOf" in prop:  # Optional[X] is {"anyOf": [X, {"type": "null"}]}: policies see X
        return _cedar_type(options[0]) if len(options) == 1 else None
    kind = prop.get("type")
    if kind is None and isinstance(prop.get("enum"), list) and prop["enum"]:
        values = prop["enum"]
        if all(isinstance(v, str) for v in values):
            return "String"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "Long"
        return None
    if kind == "array":
        element = _cedar_type(prop.get("items", {}))
        return f"Set<{element}>" if element in ("String", "Long") else None
    return _JSON_TO_CEDAR.get(str(kind))


def cedar_arguments(arguments: Mapping[str, object], argument_types: Mapping[str, str]) -> dict[str, object]:
    """The declared arguments of a call as Cedar context values; undeclared ones are dropped.

    Raises:
        ValueError: A declared argument's value does not have its declared type (the caller denies the call).
    """
    values: dict[str, object] = {}
    for name, value in arguments.items():
        cedar_type = argument_types.get(name)
        if cedar_type is None or value is None:
            continue
        if cedar_type.startswith("Set<"):
            element = cedar_type[4:-1]
            if not isinstance(value, list | tuple | set | frozenset) or not all(_is(element, v) for v in value):
                raise ValueError(f"argument '{name}' is not a {cedar_type}")
            values[name] = list(value)
        elif _is(cedar_type, value):
            values[name] = value
        else:
            raise ValueError(f"argument '{name}' is not a {cedar_type}")
    return values


def _is(cedar_type: str, value: object) -> bool:
    if cedar_type == "String":
        return isinstance(value, str)
    if cedar_type == "Bool":
        return isinstance(value, bool)
    return isinstance(value, int) and not isinstance(value, bool) and _LONG_MIN <= value <= _LONG_MAX
