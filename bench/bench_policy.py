"""Cedar decision time: ``PolicyEngine.authorize`` with pre-parsed policies, at 10 and 1,000 policies.

Each figure is the latency of one whole ``authorize`` call (argument typing, context JSON, the cached entity
handle, the Cedar call, the result), timed call by call with ``perf_counter_ns``. Policies are realistic forbids
(a tool, an argument value, a group) spread over many tools, none of which matches the allowed call; a denied
call (one forbid matching) is timed too. The baseline, measured in the same run, is the bare ``cedarpy`` call
with one trivial pre-parsed policy and a pre-parsed empty entity set: the floor of the binding on this machine,
so the ratio is what the engine and the policy count add on top of crossing into Cedar at all. (A dict lookup
would measure Python, not the decision we pay for.)

    .venv/bin/python bench/bench_policy.py [--calls N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cedarpy

from botfactory.gateway import PolicyEngine, PolicyRequest, PolicySession, PolicyTool, PolicyUser

SEAT = PolicyTool(name="github.assign_copilot_seat", side_effect="write", owner="it", needs_approval=True)
TYPES = {"org": "String", "repo": "String", "seats": "Long", "labels": "Set<String>"}


def policies(count: int, *, scoped: bool = True) -> str:
    """``count`` forbids over 98 tools (a tenth on the seat tool): argument values, groups, write tools.

    ``scoped`` puts the tool in the policy's scope (``resource == Tool::"x"``), which lets the engine keep only the
    seat tool's tenth in the seat tool's set; unscoped, the same test sits in the condition and Cedar runs all.
    """
    out = []
    for n in range(count):
        tool = f"tool.{n % 97}" if n % 10 else SEAT.name
        scope, test = (f'resource == Tool::"{tool}"', "") if scoped else ("resource", f'resource == Tool::"{tool}" && ')
        kind = n % 3
        if kind == 0:
            body = f'context.arguments has org && context.arguments.org == "blocked-{n}"'
        elif kind == 1:
            body = f'resource.side_effect == "write" && principal.groups.contains("suspended-{n}")'
        else:
            body = f"context.arguments has seats && context.arguments.seats > {1000 + n}"
        out.append(f'@id("p{n}")\nforbid(principal, action == Action::"call", {scope})\nwhen {{ {test}{body} }};\n')
    return "\n".join(out)


def request(org: str) -> PolicyRequest:
    return PolicyRequest(
        bot="support",
        agent="support/github",
        user=PolicyUser(id="slack:T1:U2", groups=frozenset({"staff", "it"}), team="T1", channel="slack"),
        tool=SEAT,
        granted=(SEAT.name, "docs.search"),
        arguments={"org": org, "user": "octocat", "seats": 1},
        session=PolicySession(id="T1:C1:1700000000.0001", channel="C1"),
    )


def timed(call: Callable[[], object], calls: int) -> tuple[float, float]:
    for _ in range(min(calls // 10, 2000)):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args(argv)

    trivial = cedarpy.PolicySet.from_str("permit(principal, action, resource);")
    empty = cedarpy.Entities.from_json_str("[]")
    bare = {"principal": 'User::"a"', "action": 'Action::"call"', "resource": 'Tool::"t"', "context": {}}
    base50, base99 = timed(lambda: cedarpy.is_authorized(bare, trivial, empty), args.calls)
    print(f"{'case':44} {'p50 µs':>8} {'p99 µs':>8} {'p50 ×':>7} {'p99 ×':>7}")
    print(f"{'baseline: bare cedarpy, 1 policy, no entities':44} {base50:8.1f} {base99:8.1f} {1:7.2f} {1:7.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        for count, scoped in ((10, True), (1000, True), (1000, False)):
            directory = Path(tmp) / f"support-{count}-{scoped}"
            directory.mkdir()
            (directory / "support.cedar").write_text(policies(count, scoped=scoped))
            started = time.perf_counter()
            engine = PolicyEngine.load(global_dir=None, bot_dirs={"support": directory}, modes={}, argument_types=TYPES)
            load_ms = (time.perf_counter() - started) * 1000
            allowed, denied = request("acme"), request(f"blocked-{0}")
            assert engine.authorize(allowed).allowed and not engine.authorize(denied).allowed
            for label, req in (("allowed", allowed), ("denied", denied)):
                p50, p99 = timed(lambda req=req, engine=engine: engine.authorize(req), args.calls)
                name = f"authorize, {count:,} {'' if scoped else 'unscoped '}policies, {label}"
                print(f"{name:44} {p50:8.1f} {p99:8.1f} {p50 / base50:7.2f} {p99 / base99:7.2f}")
            print(f"  (load and validate {count:,} policies: {load_ms:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
