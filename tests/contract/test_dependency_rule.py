"""The dependency rule of DESIGN.md §2, checked by walking every import in src/botfactory."""

from __future__ import annotations

import ast
from pathlib import Path

import botfactory

SRC = Path(botfactory.__file__).parent

# Lower layers never import higher ones. Packages of one layer do not import each other unless allowed below.
LAYERS: dict[str, int] = {
    "": 0,  # root modules: errors, config, messages
    "store": 1,
    "observability": 2,
    "inference": 3,
    "gateway": 3,
    "memory": 3,
    "identity": 3,
    "agents": 4,
    "runtime": 4,
    "registry": 5,
    "evals": 5,
    "bots": 5,
    "channels": 6,
    "server": 7,
    "console": 7,
    "testing": 7,
    "cli": 8,
}
# Root modules may use each other (config raises errors, messages is plain data).
PEER_EDGES = {("runtime", "agents"), ("server", "testing"), ("server", "console")}


def _package(module: str) -> str:
    parts = module.split(".")
    if len(parts) < 2 or not (SRC / parts[1]).is_dir():
        return ""
    return parts[1]


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("botfactory")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("botfactory")
            and node.level == 0
        ):
            found.append((node.module, node.lineno))
    return found


def _violations() -> list[str]:
    problems: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        own = relative.parts[0] if len(relative.parts) > 1 else ""
        if own not in LAYERS:
            problems.append(f"{relative}: package '{own}' has no layer in the dependency rule")
            continue
        for module, line in _imports(path):
            target = _package(module)
            if target == own:
                continue
            where = f"{relative}:{line} imports {module}"
            if target not in LAYERS:
                problems.append(f"{where}: unknown package '{target}'")
            elif LAYERS[target] > LAYERS[own] or (LAYERS[target] == LAYERS[own] and (own, target) not in PEER_EDGES):
                problems.append(f"{where}: '{own}' may not depend on '{target}'")
            elif target and module.count(".") > 1:
                problems.append(f"{where}: import from botfactory.{target} (its public __init__), not a submodule")
    return problems


def test_every_import_respects_the_layers_and_public_interfaces() -> None:
    assert _violations() == []


def test_the_checker_catches_a_violation(tmp_path: Path, monkeypatch: object) -> None:
    # guard against a checker that can never fail: an upward import must be reported
    bad = SRC / "store" / "_dependency_rule_probe.py"
    bad.write_text("from botfactory.agents import Agent\nfrom botfactory.memory.knowledge import Passage\n")
    try:
        problems = _violations()
    finally:
        bad.unlink()
    assert any("'store' may not depend on 'agents'" in p for p in problems)
    assert any("'store' may not depend on 'memory'" in p for p in problems)
