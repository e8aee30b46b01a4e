"""Slack's v0 request signature: accepted when right, refused (with the reason) in every other case."""

from __future__ import annotations

import json

import pytest

from botfactory.channels import SignatureError, verify_slack_signature
from botfactory.testing import message_event, signed_event

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_800_000_000


def signed(**options: int) -> tuple[bytes, dict[str, str]]:
    return signed_event(message_event("hello"), SECRET, timestamp=options.get("timestamp", NOW))


def test_a_correctly_signed_request_is_accepted() -> None:
    body, headers = signed()
    verify_slack_signature(SECRET, body, headers["x-slack-request-timestamp"], headers["x-slack-signature"], now=NOW)


def test_slacks_documented_example_signature_verifies() -> None:
    # The worked example from Slack's "Verifying requests from Slack" documentation.
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    verify_slack_signature(SECRET, body, "1531420618", signature, now=1531420618)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("tampered body", "does not match"),
        ("wrong secret", "does not match"),
        ("stale timestamp", "beyond 300 s"),
        ("future timestamp", "beyond 300 s"),
        ("replayed outside the window", "beyond 300 s"),
        ("no signature", "no X-Slack-Request-Timestamp or X-Slack-Signature"),
        ("no timestamp", "no X-Slack-Request-Timestamp or X-Slack-Signature"),
        ("timestamp not a number", "not a number"),
    ],
)
def test_a_request_that_is_not_exactly_what_slack_signed_is_refused(change: str, reason: str) -> None:
    body, headers = signed()
    timestamp: str | None = headers["x-slack-request-timestamp"]
    signature: str | None = headers["x-slack-signature"]
    secret, now = SECRET, NOW
    if change == "tampered body":
        body = json.dumps({**json.loads(body), "team_id": "T666"}).encode()
    elif change == "wrong secret":
        secret = "not-the-secret"
    elif change == "stale timestamp":
        body, headers = signed(timestamp=NOW - 301)
        timestamp, signature = headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    elif change == "future timestamp":
        body, headers = signed(timestamp=NOW + 301)
        timestamp, signature = headers["x-slack-request-timestamp"], headers["x-slack-signature"]
    elif change == "replayed outside the window":
        now = NOW + 3600  # the same, valid request, sent again an hour later
    elif change == "no signature":
        signature = None
    elif change == "no timestamp":
        timestamp = None
    elif change == "timestamp not a number":
        timestamp = "soon"
    with pytest.raises(SignatureError, match=reason) as caught:
        verify_slack_signature(secret, body, timestamp, signature, now=now)
    assert caught.value.http_status == 401
