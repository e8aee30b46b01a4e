"""Cedar authorization of tool calls, against real cedarpy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import cedarpy
import pytest

from botfactory.errors import ConfigError, PolicyError
from botfactory.gateway import (
    GRANT_POLICY_ID,
    NOT_GRANTED_ID,
    PolicyEngine,
    PolicyRequest,
    PolicySession,
    PolicyTool,
    PolicyUser,
    argument_types_from_json_schemas,
)
from botfactory.gateway.policy import _context_keys

SEAT = PolicyTool(name="github.assign_copilot_seat", side_effect="write", owner="it", needs_approval=True)
SEARCH = PolicyTool(name="docs.search")


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def request(
    *,
    tool: PolicyTool = SEAT,
    granted: tuple[str, ...] = (SEAT.name, SEARCH.name),
    groups: frozenset[str] = frozenset(),
    arguments: dict[str, object] | None = None,
    bot: str = "support",
) -> PolicyRequest:
    return PolicyRequest(
        bot=bot,
        agent=f"{bot}/github",
        user=PolicyUser(id="slack:T1:U2", groups=groups, team="T1", channel="slack"),
        tool=tool,
        granted=granted,
        arguments=arguments or {},
        session=PolicySession(id="T1:C1:1700000000.0001", channel="C1"),
    )


def load(tmp_path: Path, *, modes: dict[str, str] | None = None, **types: str) -> PolicyEngine:
    return PolicyEngine.load(
        global_dir=tmp_path / "global",
        bot_dirs={"support": tmp_path / "support"},
        modes=modes or {},
        argument_types=types,
    )


NO_EXTERNAL = """\
// Copilot seats only for our own organisation.
@id("no-external-orgs")
@reason("seats are only granted in the acme organisation")
forbid(principal, action == Action::"call", resource == Tool::"github.assign_copilot_seat")
when { context.arguments has org && context.arguments.org != "acme" };
"""


def test_a_policy_failing_schema_validation_fails_the_load_naming_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "support",
        "seats.cedar",
        'forbid(principal, action, resource) when { resource.side_effect == "write" };\n\n'
        "// the next policy compares a string with a number\n"
        "forbid(principal, action, resource)\n  when { resource.owner == 3 };\n",
    )
    with pytest.raises(PolicyError) as caught:
        load(tmp_path)
    assert f"{path}:4:" in caught.value.message
    assert "fails validation" in caught.value.message
    assert isinstance(caught.value, ConfigError)


def test_a_policy_that_does_not_parse_fails_the_load_naming_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "global",
        "base.cedar",
        'forbid(principal, action, resource);\n\nforbid(principal, action, resource) when { principal.id == "x" ',
    )
    with pytest.raises(PolicyError, match=rf"{path}:3: the policy does not parse"):
        load(tmp_path)


def test_a_policy_reading_an_unknown_attribute_fails_the_load(tmp_path: Path) -> None:
    write(
        tmp_path / "support", "typo.cedar", 'forbid(principal, action, resource) when { principal.department == "x" };'
    )
    with pytest.raises(PolicyError, match=r"typo.cedar:1: .*attribute `department` on entity type `User` not found"):
        load(tmp_path)


def test_an_unguarded_optional_argument_read_fails_the_load(tmp_path: Path) -> None:
    # Cedar would skip an erroring forbid at runtime, i.e. allow: the validator must refuse it up front
    write(
        tmp_path / "support",
        "unsafe.cedar",
        'forbid(principal, action, resource) when { context.arguments.org != "acme" };',
    )
    with pytest.raises(PolicyError, match=r"optional attribute `arguments\.org`"):
        load(tmp_path, org="String")


def test_a_permit_in_a_policy_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "support", "open.cedar", "permit(principal, action, resource);")
    with pytest.raises(PolicyError, match=r"open.cedar:1: only 'forbid' policies are allowed"):
        load(tmp_path)


def test_an_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="unknown policy mode 'audit'"):
        load(tmp_path, modes={"support": "audit"})


def test_an_ungranted_tool_is_denied_without_asking_cedar(tmp_path: Path) -> None:
    engine = load(tmp_path)
    decision = engine.authorize(request(tool=SEAT, granted=(SEARCH.name,)))
    assert not decision.allowed and not decision.effective
    assert decision.reasons == (NOT_GRANTED_ID,)
    assert decision.message == "tool github.assign_copilot_seat is not granted to bot support"


def test_a_granted_tool_is_allowed_by_the_platform_grant(tmp_path: Path) -> None:
    write(tmp_path / "support", "empty.cedar", "// nothing yet\n")
    decision = load(tmp_path).authorize(request(tool=SEARCH))
    assert decision.allowed and decision.effective and not decision.would_deny
    assert decision.reasons == (GRANT_POLICY_ID,)
    assert decision.message == "" and decision.errors == ()
    assert decision.elapsed_us > 0


def test_a_forbid_on_an_argument_denies_with_the_policy_id(tmp_path: Path) -> None:
    write(tmp_path / "support", "support.cedar", NO_EXTERNAL)
    engine = load(tmp_path, org="String")
    denied = engine.authorize(request(arguments={"org": "evil-corp", "user": "octocat"}))
    assert not denied.allowed
    assert denied.reasons == ("support:no-external-orgs",)
    assert denied.message == (
        "denied by policy support:no-external-orgs: seats are only granted in the acme organisation"
    )
    assert engine.sources["support:no-external-orgs"].endswith("support.cedar:2")
    assert engine.authorize(request(arguments={"org": "acme"})).allowed
    assert engine.authorize(request(arguments={})).allowed


def test_an_argument_of_the_wrong_type_is_denied(tmp_path: Path) -> None:
    write(tmp_path / "support", "support.cedar", NO_EXTERNAL)
    decision = load(tmp_path, org="String").authorize(request(arguments={"org": 42}))
    assert not decision.allowed
    assert decision.message == "denied: argument 'org' is not a String"


def test_a_policy_on_user_groups(tmp_path: Path) -> None:
    write(
        tmp_path / "support",
        "writes.cedar",
        "// only IT admins may trigger tools with side effects\n"
        'forbid(principal, action, resource) when { resource.side_effect == "write" }\n'
        'unless { principal.groups.contains("it-admins") };\n',
    )
    engine = load(tmp_path)
    denied = engine.authorize(request(groups=frozenset({"staff"})))
    assert not denied.allowed and denied.reasons == ("writes:1",)
    assert denied.message == "denied by policy writes:1"
    assert engine.authorize(request(groups=frozenset({"staff", "it-admins"}))).allowed
    assert engine.authorize(request(tool=SEARCH)).allowed  # reads are untouched


def test_global_and_bot_policies_combine(tmp_path: Path) -> None:
    write(
        tmp_path / "global",
        "approvals.cedar",
        '@id("no-approval-tools-off-slack")\nforbid(principal, action, resource) when { resource.needs_approval } unless { principal has channel && principal.channel == "slack" };',
    )
    write(
        tmp_path / "global",
        "search.cedar",
        'forbid(principal, action, resource == Tool::"docs.search") when { context.session has thread };',
    )
    write(tmp_path / "support", "support.cedar", NO_EXTERNAL)
    engine = PolicyEngine.load(
        global_dir=tmp_path / "global",
        bot_dirs={"support": tmp_path / "support", "itsm": tmp_path / "itsm"},
        modes={},
        argument_types={"org": "String"},
    )
    both = engine.authorize(request(arguments={"org": "evil"}))
    assert not both.allowed
    assert set(both.reasons) == {"support:no-external-orgs"}
    off_slack = PolicyRequest(
        bot="support",
        agent="support/github",
        user=PolicyUser(id="http:alice", channel="http"),
        tool=SEAT,
        granted=(SEAT.name,),
        arguments={"org": "evil"},
        session=PolicySession(id="s1"),
    )
    assert set(engine.authorize(off_slack).reasons) == {
        "approvals:no-approval-tools-off-slack",
        "support:no-external-orgs",
    }
    # the itsm bot gets the global policies but not the support bot's
    itsm = engine.authorize(request(bot="itsm", arguments={"org": "evil"}))
    assert itsm.allowed
    unknown_bot = engine.authorize(request(bot="cloudops", arguments={"org": "evil"}))
    assert unknown_bot.allowed  # no bot directory: the global policies only


def test_a_policy_id_used_twice_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path / "global",
        "support.cedar",
        '@id("no-external-orgs")\nforbid(principal, action, resource) when { false };',
    )
    write(tmp_path / "support", "support.cedar", NO_EXTERNAL)
    with pytest.raises(PolicyError, match="policy id support:no-external-orgs is already used"):
        load(tmp_path, org="String")


def test_log_only_allows_but_records_the_deny(tmp_path: Path) -> None:
    write(tmp_path / "support", "support.cedar", NO_EXTERNAL)
    engine = load(tmp_path, modes={"support": "log-only"}, org="String")
    decision = engine.authorize(request(arguments={"org": "evil"}))
    assert decision.mode == "log-only"
    assert not decision.allowed and decision.effective and decision.would_deny
    assert decision.reasons == ("support:no-external-orgs",)
    ungranted = engine.authorize(request(granted=()))
    assert ungranted.would_deny and ungranted.reasons == (NOT_GRANTED_ID,)


def test_empty_and_missing_policy_directories_work(tmp_path: Path) -> None:
    (tmp_path / "support").mkdir()
    engine = PolicyEngine.load(
        global_dir=None, bot_dirs={"support": tmp_path / "support", "itsm": tmp_path / "nope"}, modes={}
    )
    assert engine.authorize(request()).allowed
    assert engine.authorize(request(bot="itsm")).allowed
    assert engine.mode("support") == "enforce"


def test_entity_handles_are_reused_for_the_same_user_and_tool(tmp_path: Path) -> None:
    write(tmp_path / "support", "support.cedar", NO_EXTERNAL)
    engine = load(tmp_path, org="String")
    for org in ("acme", "evil", "acme"):
        engine.authorize(request(arguments={"org": org}))
    assert len(engine._entities) == 1
    # a user whose groups changed gets fresh entities
    engine.authorize(request(groups=frozenset({"it-admins"})))
    assert len(engine._entities) == 2


def test_argument_types_come_from_tool_json_schemas() -> None:
    types = argument_types_from_json_schemas(
        {
            "github.assign_copilot_seat": {
                "type": "object",
                "properties": {"org": {"type": "string"}, "seats": {"type": "integer"}, "dry": {"type": "boolean"}},
            },
            "github.add_labels": {
                "properties": {"org": {"type": "string"}, "labels": {"type": "array", "items": {"type": "string"}}},
            },
            "calc": {"properties": {"ratio": {"type": "number"}, "nested": {"type": "object"}}},
        }
    )
    assert types == {"org": "String", "seats": "Long", "dry": "Bool", "labels": "Set<String>"}
    with pytest.raises(PolicyError, match="argument 'org' is String in tool a but Long in tool b"):
        argument_types_from_json_schemas(
            {"a": {"properties": {"org": {"type": "string"}}}, "b": {"properties": {"org": {"type": "integer"}}}}
        )


def test_enums_and_optionals_from_python_type_hints_are_visible_to_policies() -> None:
    """``Literal[...]`` becomes an enum and ``X | None`` an anyOf: both must stay visible (a forbid on them applies)."""
    types = argument_types_from_json_schemas(
        {
            "restart": {
                "properties": {
                    "env": {"enum": ["dev", "prod"]},
                    "tier": {"enum": [1, 2]},
                    "mixed": {"enum": ["a", 1]},
                    "org": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "regions": {"type": "array", "items": {"enum": ["eu", "us"]}},
                    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                }
            }
        }
    )
    assert types == {"env": "String", "tier": "Long", "org": "String", "regions": "Set<String>"}


def test_set_arguments_are_visible_to_policies(tmp_path: Path) -> None:
    write(
        tmp_path / "support",
        "labels.cedar",
        'forbid(principal, action, resource) when { context.arguments has labels && context.arguments.labels.contains("security") };',
    )
    engine = load(tmp_path, labels="Set<String>")
    assert not engine.authorize(request(arguments={"labels": ["bug", "security"]})).allowed
    assert engine.authorize(request(arguments={"labels": ["bug"]})).allowed
    assert not engine.authorize(request(arguments={"labels": ["bug", 3]})).allowed


def test_a_policy_scoped_to_one_tool_applies_to_that_tool_only(tmp_path: Path) -> None:
    write(
        tmp_path / "support",
        "search.cedar",
        '@id("no-search")\nforbid(principal, action, resource == Tool::"docs.search");\n'
        'forbid(principal, action, resource) when { principal has team && principal.team == "T9" };\n',
    )
    engine = load(tmp_path)
    assert engine.authorize(request(tool=SEARCH)).reasons == ("search:no-search",)
    assert engine.authorize(request(tool=SEAT)).allowed


def test_a_policy_annotated_approval_asks_instead_of_denying_unless_a_hard_forbid_also_applies(
    tmp_path: Path,
) -> None:
    write(
        tmp_path / "support",
        "seats.cedar",
        '@id("outsiders")\n@approval("required")\n'
        'forbid(principal, action, resource) when { !principal.groups.contains("staff") };\n'
        '@id("no-evil")\nforbid(principal, action, resource) when { context.arguments has org && context.arguments.org == "evil" };',
    )
    engine = load(tmp_path, org="String")
    asks = engine.authorize(request(arguments={"org": "acme"}))
    assert (asks.allowed, asks.needs_approval, asks.reasons) == (False, True, ("seats:outsiders",))
    hard = engine.authorize(request(arguments={"org": "evil"}))
    assert (hard.allowed, hard.needs_approval) == (False, False)
    staff = engine.authorize(request(groups=frozenset({"staff"}), arguments={"org": "acme"}))
    assert (staff.allowed, staff.needs_approval) == (True, False)


def test_a_tool_no_policy_applies_to_is_allowed_without_asking_cedar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "support", "seat.cedar", NO_EXTERNAL)  # scoped to the seat tool: nothing applies to search
    engine = load(tmp_path, org="String")
    asked: list[object] = []
    real = cedarpy.is_authorized
    monkeypatch.setattr(cedarpy, "is_authorized", lambda *args: asked.append(args[0]) or real(*args))
    decision = engine.authorize(request(tool=SEARCH, arguments={"org": "evil"}))
    assert decision.allowed and decision.reasons == (GRANT_POLICY_ID,) and asked == []
    denied = engine.authorize(request(tool=SEAT, arguments={"org": "evil"}))  # the seat tool still asks Cedar
    assert not denied.allowed and denied.reasons == ("seat:no-external-orgs",) and len(asked) == 1
    wrong_type = engine.authorize(request(tool=SEARCH, arguments={"org": 7}))  # typed as before, even unasked
    assert not wrong_type.allowed and wrong_type.message == "denied: argument 'org' is not a String"


def test_policies_see_every_context_attribute_they_name_whichever_others_the_request_leaves_out(
    tmp_path: Path,
) -> None:
    # Requests carry only the context attributes a tool's policies name; each kind of reference must still see its
    # attribute: a path, a `has` test, and `in` on an entity reference.
    write(
        tmp_path / "support",
        "context.cedar",
        '@id("agent-has")\nforbid(principal, action, resource == Tool::"docs.search") when { context has agent };\n'
        '@id("bot-in")\nforbid(principal, action, resource == Tool::"github.assign_copilot_seat") '
        'when { context.agent in Bot::"support" && context.session has channel && context.session.channel == "C1" };\n',
    )
    engine = load(tmp_path)
    assert engine.authorize(request(tool=SEARCH)).reasons == ("context:agent-has",)
    assert engine.authorize(request(tool=SEAT)).reasons == ("context:bot-in",)


def test_the_context_attributes_named_by_policies_are_found_in_their_json_form() -> None:
    def est(condition: str) -> dict[str, object]:
        text = f"forbid(principal, action, resource) when {{ {condition} }};"
        return cast(dict[str, object], json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]["policy0"])

    assert _context_keys([est('context.arguments.org == "x"')]) == {"arguments"}
    assert _context_keys([est("context has bot"), est('context.session.id like "T1:*"')]) == {"bot", "session"}
    assert _context_keys([est('principal.team == "T1"')]) == frozenset()
    assert _context_keys([est("context has bot"), est("context == {}")]) is None  # (schema validation refuses it)
