from __future__ import annotations

import email.utils
import time

import pytest

from botfactory.errors import ModelUnavailableError
from botfactory.inference._http import HttpAnswer, TransientHttpError
from botfactory.inference._retry import RetryPolicy, redact_url, send_with_retries


def test_redact_url_drops_credentials_and_query() -> None:
    assert redact_url("https://user:pw@api.example.com:8443/v1/?api-key=abc#x") == "https://api.example.com:8443/v1"


def test_backoff_grows_exponentially_with_jitter_and_cap() -> None:
    policy = RetryPolicy(5, base_delay_s=1.0, max_delay_s=6.0, rand=lambda: 0.5)
    assert [policy.backoff(n) for n in range(5)] == [1.0, 2.0, 4.0, 6.0, 6.0]
    low = RetryPolicy(5, base_delay_s=1.0, rand=lambda: 0.0)
    assert low.backoff(2) == 2.0


async def test_retry_after_http_date_is_honoured() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    later = email.utils.formatdate(time.time() + 20, usegmt=True)
    answers = [HttpAnswer(503, {"retry-after": later}, b""), HttpAnswer(200, {}, b"{}")]

    async def send() -> HttpAnswer:
        return answers.pop(0)

    response = await send_with_retries(send, endpoint="http://x", policy=RetryPolicy(1, sleep=sleep))
    assert response.status == 200
    assert 15 < slept[0] <= 21


async def test_retry_after_beyond_limit_fails_fast_and_is_never_success() -> None:
    calls = 0

    async def send() -> HttpAnswer:
        nonlocal calls
        calls += 1
        return HttpAnswer(429, {"retry-after": "3600"}, b"")

    async def sleep(seconds: float) -> None:
        pytest.fail("waited an hour")

    with pytest.raises(ModelUnavailableError, match="3600s"):
        await send_with_retries(send, endpoint="http://x", policy=RetryPolicy(3, sleep=sleep))
    assert calls == 1


async def test_zero_retries_means_one_attempt() -> None:
    async def send() -> HttpAnswer:
        raise TransientHttpError("ConnectError")

    with pytest.raises(ModelUnavailableError, match="after 1 attempt "):
        await send_with_retries(send, endpoint="http://x", policy=RetryPolicy(0))
