"""Reading ``*.cedar`` files: split into policies, parse, validate, name each policy.

cedarpy reports neither lines nor columns, so the files are split into statements here (a small scanner that
knows strings and ``//`` comments) and each Cedar error is mapped back to the line its policy starts on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy

from botfactory.errors import PolicyError


@dataclass(frozen=True, kw_only=True)
class LoadedPolicy:
    """One ``forbid`` policy from a file, in Cedar's JSON form, under its platform id."""

    id: str
    source: str
    est: dict[str, Any]
    reason: str | None
    approval: bool = False
    """Annotated ``@approval("required")``: when it applies, a person may still allow the call (an approval)."""


def split_statements(text: str) -> list[tuple[int, str]]:
    """The policies of ``text`` with the 1-based line each starts on (its first annotation or keyword)."""
    statements: list[tuple[int, str]] = []
    start: int | None = None
    begin = 0
    line = 1
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            line += 1
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif char.isspace():
            pass
        else:
            if start is None:
                start, begin = line, i
            if char == '"':
                i += 1
                while i < len(text) and text[i] != '"':
                    if text[i] == "\\":
                        i += 1
                    elif text[i] == "\n":
                        line += 1
                    i += 1
            elif char == ";":
                statements.append((start, text[begin : i + 1]))
                start = None
        i += 1
    if start is not None:
        statements.append((start, text[begin:]))
    return statements


def load_file(path: Path, schema: cedarpy.Schema) -> list[LoadedPolicy]:
    """Parse and validate one policy file.

    Raises:
        PolicyError: The file cannot be read, a policy does not parse, is a template or a ``permit``, or fails
            validation; the message names ``path:line`` and Cedar's message.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc}") from exc
    statements = split_statements(text)
    for line, statement in statements:
        try:
            cedarpy.policies_to_json_str(statement)
        except ValueError as exc:
            raise PolicyError(f"{path}:{line}: the policy does not parse: {exc}") from exc
    est = json.loads(cedarpy.policies_to_json_str(text)) if statements else {"staticPolicies": {}, "templates": {}}
    if est.get("templates"):
        raise PolicyError(f"{path}: templates (?principal, ?resource) are not supported; write plain policies")
    static: dict[str, dict[str, Any]] = est["staticPolicies"]
    if len(static) != len(statements):  # the scanner and Cedar disagree: never guess which line is which
        raise PolicyError(f"{path}: found {len(statements)} statements but Cedar parsed {len(static)} policies")

    result = cedarpy.validate_policies(text, schema)
    if not result.validation_passed:
        first = result.errors[0]
        at = _line_of(first.policy_id, statements)
        where = f"{path}:{at}" if at else str(path)
        more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
        raise PolicyError(f"{where}: the policy fails validation against the schema: {first.error}{more}")

    policies: list[LoadedPolicy] = []
    for n, (line, _) in enumerate(statements):
        policy = static[f"policy{n}"]
        if policy["effect"] != "forbid":
            raise PolicyError(
                f"{path}:{line}: only 'forbid' policies are allowed; a bot's granted tools are permitted by the "
                "platform, so remove this 'permit' or grant the tool in the bot's definition"
            )
        annotations: dict[str, str] = policy.get("annotations", {})
        name = annotations.get("id") or str(n + 1)
        policies.append(
            LoadedPolicy(
                id=f"{path.stem}:{name}",
                source=f"{path}:{line}",
                est=policy,
                reason=annotations.get("reason"),
                approval="approval" in annotations,
            )
        )
    return policies


def _line_of(policy_id: str, statements: list[tuple[int, str]]) -> int | None:
    if policy_id.startswith("policy") and policy_id[6:].isdigit() and int(policy_id[6:]) < len(statements):
        return statements[int(policy_id[6:])][0]
    return None


def load_dir(directory: Path, schema: cedarpy.Schema) -> list[LoadedPolicy]:
    """Every policy of ``directory/*.cedar``, files in name order; a missing directory holds none."""
    if not directory.exists():
        return []
    if not directory.is_dir():
        raise PolicyError(f"{directory}: expected a directory of *.cedar policy files")
    policies: list[LoadedPolicy] = []
    for path in sorted(directory.glob("*.cedar")):
        policies += load_file(path, schema)
    return policies
