"""Slack apps from settings, which app a request belongs to, and the action handler registry."""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from botfactory.channels import SignatureError, SlackAction, SlackApp, SlackApps, SlackInteractions
from botfactory.channels.slack_interactions import parse_actions
from botfactory.config import DEFAULT_SLACK_THINKING, Settings, SlackAppConfig
from botfactory.errors import ConfigError, InvalidInputError
from botfactory.runtime import Runtime
from botfactory.testing import action_payload, message_event, signed_event


def settings(**values: object) -> Settings:
    return Settings.load(home="/nonexistent-home", **values)


def test_no_slack_settings_means_no_slack() -> None:
    assert SlackApps.from_settings(settings()) is None


def test_the_flat_settings_are_the_app_named_default_with_the_thinking_indicator_on() -> None:
    apps = SlackApps.from_settings(
        settings(slack_signing_secret=SecretStr("s"), slack_bot_token=SecretStr("xoxb-1"), slack_channels=["C1"])
    )
    assert apps is not None
    [app] = list(apps)
    assert (app.name, app.bot, app.channels, app.thinking_text) == (
        "default",
        "support",
        frozenset({"C1"}),
        DEFAULT_SLACK_THINKING,
    )
    assert apps.get(None) is app


def test_an_empty_thinking_text_turns_the_indicator_off() -> None:
    apps = SlackApps.from_settings(
        settings(slack_signing_secret=SecretStr("s"), slack_bot_token=SecretStr("t"), slack_thinking_text="")
    )
    assert apps is not None and apps.get("default") is not None
    assert apps.get("default").thinking_text is None  # type: ignore[union-attr]


@pytest.mark.parametrize("given", ["slack_signing_secret", "slack_bot_token"])
def test_half_a_single_app_is_a_config_error_naming_the_missing_variable(given: str) -> None:
    with pytest.raises(ConfigError, match=r"BOTFACTORY_SLACK_(SIGNING_SECRET|BOT_TOKEN)"):
        SlackApps.from_settings(settings(**{given: SecretStr("x")}))


def test_named_apps_join_the_flat_one_and_a_clashing_default_is_refused() -> None:
    extra = {"ops": SlackAppConfig(signing_secret=SecretStr("o"), bot_token=SecretStr("xoxb-o"), bot="ops")}
    apps = SlackApps.from_settings(
        settings(slack_signing_secret=SecretStr("s"), slack_bot_token=SecretStr("t"), slack_apps=extra)
    )
    assert apps is not None and [a.name for a in apps] == ["default", "ops"]
    assert apps.get(None) is apps.get("default")
    clash = {"default": extra["ops"]}
    with pytest.raises(ConfigError, match="clashes"):
        SlackApps.from_settings(
            settings(slack_signing_secret=SecretStr("s"), slack_bot_token=SecretStr("t"), slack_apps=clash)
        )


def test_slack_apps_can_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BOTFACTORY_SLACK_APPS",
        '{"hr": {"signing_secret": "h", "bot_token": "xoxb-h", "bot": "hr", "api_app_id": "A1"}}',
    )
    apps = SlackApps.from_settings(settings())
    assert apps is not None
    [app] = list(apps)
    assert (app.name, app.bot, app.api_app_id, app.signing_secret) == ("hr", "hr", "A1", "h")


APPS = SlackApps(
    [
        SlackApp(name="a", signing_secret="secret-a", bot_token="xoxb-a", api_app_id="A1"),
        SlackApp(name="b", signing_secret="secret-b", bot_token="xoxb-b"),
    ]
)


def verify(secret: str, **event: str) -> SlackApp:
    body, headers = signed_event(message_event("hi", **event), secret)
    hint = event.get("api_app_id")
    return APPS.verify(body, headers["x-slack-request-timestamp"], headers["x-slack-signature"], api_app_id=hint)


def test_a_request_belongs_to_the_app_whose_secret_signed_it() -> None:
    assert verify("secret-a").name == "a"
    assert verify("secret-b").name == "b"


def test_a_request_naming_an_app_id_is_verified_with_that_apps_secret_only() -> None:
    assert verify("secret-a", api_app_id="A1").name == "a"
    with pytest.raises(SignatureError):
        verify("secret-b", api_app_id="A1")
    assert verify("secret-b", api_app_id="A-unknown").name == "b"  # an unknown id: every secret is tried


def test_a_request_no_app_signed_is_refused_saying_so() -> None:
    with pytest.raises(SignatureError, match="no configured Slack app"):
        verify("secret-c")
    stale = str(int(time.time()) - 900)
    with pytest.raises(SignatureError, match="beyond 300 s"):
        APPS.verify(b"{}", stale, "v0=00")


async def handler_one(action: SlackAction, runtime: Runtime) -> None:
    return None


async def handler_two(action: SlackAction, runtime: Runtime) -> None:
    return None


def test_actions_go_to_the_longest_registered_prefix() -> None:
    registry = SlackInteractions()
    registry.register("approve:", handler_one)
    registry.register("approve:seat:", handler_two)
    assert registry.handler("approve:seat:1") is handler_two
    assert registry.handler("approve:other") is handler_one
    assert registry.handler("deny:1") is None
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("approve:", handler_two)
    with pytest.raises(ConfigError, match="non-empty"):
        registry.register("", handler_two)


def test_a_block_actions_payload_becomes_typed_actions_with_a_stable_dedup_key() -> None:
    app = SlackApp(name="a", signing_secret="s", bot_token="t", bot="ops")
    [action] = parse_actions(action_payload("approve:1", value="v", thread_ts="1.0"), app)
    assert (action.app, action.bot, action.thread_ts, action.value) == ("a", "ops", "1.0", "v")
    assert action.dedup_key == "slack-action:T1:1.2.abc:approve:1"
    [select] = parse_actions(
        {**action_payload("pick"), "actions": [{"action_id": "pick", "selected_option": {"value": "opt-2"}}]}, app
    )
    assert select.value == "opt-2" and select.thread_ts == select.message_ts  # not in a thread: its own ts
    with pytest.raises(InvalidInputError):
        parse_actions({"type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1"}, "actions": []}, app)


def test_an_apps_secrets_never_show_in_its_repr() -> None:
    app = SlackApp(name="a", signing_secret="very-secret", bot_token="xoxb-secret-token")
    assert "very-secret" not in repr(app) and "xoxb-secret-token" not in repr(app)
    assert "very-secret" not in repr(APPS.get("a"))
