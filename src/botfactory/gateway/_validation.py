"""Tool-argument validation against a tool's JSON schema (Draft 2020-12): fast when valid, clear when not.

Valid arguments are the common case and are checked by ``jsonschema-rs`` (compiled, about a microsecond for a
typical tool's schema; Python's ``jsonschema`` took ~40 µs of every gateway call). Invalid arguments are explained
by Python's ``jsonschema``, whose messages the model and the audit log have always seen. A schema ``jsonschema-rs``
cannot compile (one that is itself invalid, or refers to a document elsewhere: nothing is ever fetched) is checked
by Python's ``jsonschema`` alone, as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import jsonschema_rs

__all__ = ["ArgumentsValidator"]


class ArgumentsValidator:
    """Checks arguments against one schema; build once per tool schema and reuse.

    Args:
        schema: The tool's input schema (JSON Schema, Draft 2020-12).
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._explainer: jsonschema.protocols.Validator | None = None
        self._fast: jsonschema_rs.Validator | None
        try:
            self._fast = jsonschema_rs.Draft202012Validator(dict(schema), offline=True)
        except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError, TypeError):
            self._fast = None

    def problems(self, arguments: Mapping[str, Any]) -> list[str]:
        """What is wrong with ``arguments`` (``path: message``, ordered by path); empty when they are valid."""
        if self._fast is not None:
            try:
                if self._fast.is_valid(arguments):
                    return []
            except (
                ValueError,
                TypeError,
                OverflowError,
            ):  # not JSON (a key that is not text, an object): let jsonschema explain
                pass
        if self._explainer is None:
            self._explainer = jsonschema.Draft202012Validator(self.schema)
        found = sorted(self._explainer.iter_errors(arguments), key=lambda e: list(e.absolute_path))
        problems = [f"{'/'.join(map(str, p.absolute_path)) or 'arguments'}: {p.message}" for p in found]
        if problems or self._fast is None:
            return problems
        # The two disagree (they implement one draft; this should not happen): the stricter answer stands.
        return [
            f"{'/'.join(map(str, e.instance_path)) or 'arguments'}: {e.message}"
            for e in self._fast.iter_errors(arguments)
        ]
