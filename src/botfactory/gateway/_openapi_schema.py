"""OpenAPI schema objects turned into plain JSON schemas (draft 2020-12) that the gateway validates and models read.

Local references (``#/components/...``) are inlined, with a guard against cycles; OpenAPI 3.0 dialect is brought to
JSON Schema (``nullable``, boolean ``exclusiveMinimum``/``exclusiveMaximum``); keywords meant for documentation
tools only (``xml``, ``externalDocs``, ``discriminator``) are dropped; in request bodies, ``readOnly`` properties
(an ``id`` the server assigns) are left out.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import unquote

__all__ = ["UnusableOperationError", "deref", "to_json_schema"]

MAX_REF_DEPTH: Final = 32
"""References nested deeper than this are replaced by an empty schema (anything), like a cycle."""

_DROPPED = frozenset({"xml", "externalDocs", "discriminator", "nullable"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMAS = frozenset(
    {
        "items",
        "additionalProperties",
        "additionalItems",
        "not",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)


class UnusableOperationError(Exception):
    """An operation cannot become a tool (a reference points nowhere, a required body is not JSON, ...)."""


def resolve_pointer(document: Mapping[str, Any], ref: str) -> Any:
    """The node a local reference (``#/components/schemas/Ticket``) points at.

    Raises:
        UnusableOperationError: the reference is not local or points at nothing.
    """
    if not ref.startswith("#"):
        raise UnusableOperationError(f"reference {ref} is not inside the document (only #/... references are read)")
    node: Any = document
    for token in ref[1:].lstrip("/").split("/") if ref not in ("#", "#/") else []:
        key = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            raise UnusableOperationError(f"reference {ref} points at nothing in the document")
    return node


def deref(node: Any, document: Mapping[str, Any]) -> Any:
    """Follow ``$ref`` of a non-schema object (parameter, request body, path item, security scheme) to its target.

    Raises:
        UnusableOperationError: a reference is not local, points at nothing, or loops.
    """
    seen: set[str] = set()
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if ref in seen:
            raise UnusableOperationError(f"reference {ref} refers to itself")
        seen.add(ref)
        node = resolve_pointer(document, ref)
    return node


def to_json_schema(node: Any, document: Mapping[str, Any], *, writing: bool = False) -> Any:
    """A self-contained JSON schema for an OpenAPI schema object: references inlined, OpenAPI 3.0 dialect converted.

    Args:
        writing: The schema describes what the client sends (a request body): ``readOnly`` properties are left out.

    Raises:
        UnusableOperationError: a reference is not local or points at nothing.
    """
    return _convert(node, document, (), writing)


def _convert(node: Any, document: Mapping[str, Any], stack: tuple[str, ...], writing: bool) -> Any:
    if not isinstance(node, Mapping):
        return copy.deepcopy(node)  # booleans are schemas too
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in stack or len(stack) >= MAX_REF_DEPTH:
            # A recursive type (a comment with replies): accept anything below this point.
            return {"description": f"recursive {ref.rsplit('/', 1)[-1]}"}
        resolved = _convert(resolve_pointer(document, ref), document, (*stack, ref), writing)
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if siblings and isinstance(resolved, dict):
            resolved.update(_convert(siblings, document, stack, writing))  # 3.1 allows keywords beside $ref
        return resolved
    out: dict[str, Any] = {}
    hidden: set[str] = set()
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, Mapping):
            converted = {name: _convert(sub, document, stack, writing) for name, sub in value.items()}
            if writing and key == "properties":
                hidden = {name for name, sub in converted.items() if isinstance(sub, dict) and sub.get("readOnly")}
                converted = {name: sub for name, sub in converted.items() if name not in hidden}
            out[key] = converted
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_convert(sub, document, stack, writing) for sub in value]
        elif key in _SCHEMAS:
            out[key] = _convert(value, document, stack, writing)
        else:
            out[key] = copy.deepcopy(value)
    if hidden and isinstance(out.get("required"), list):
        out["required"] = [name for name in out["required"] if name not in hidden]
    if node.get("nullable") is True:
        _allow_null(out)
    for bound in ("Minimum", "Maximum"):
        flag = out.get(f"exclusive{bound}")
        if isinstance(flag, bool):  # OpenAPI 3.0: a flag on `minimum`; JSON Schema: the bound itself
            del out[f"exclusive{bound}"]
            if flag and bound.lower() in out:
                out[f"exclusive{bound}"] = out.pop(bound.lower())
    return out


def _allow_null(schema: dict[str, Any]) -> None:
    kind = schema.get("type")
    if isinstance(kind, str):
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
