"""Retries for HTTP model endpoints: exponential backoff with jitter, honouring ``Retry-After``.

Retried: 429, 5xx, connection failures and timeouts. Everything else is final. A response that is not
2xx is never returned. Error messages name the endpoint without credentials and never carry prompt text.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from botfactory.errors import ModelResponseError, ModelUnavailableError
from botfactory.inference._http import HttpAnswer, TransientHttpError, UnreachableHttpError

__all__ = ["RetryPolicy", "redact_url", "send_with_retries"]

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

_MAX_ERROR_CHARS = 300


class RetryPolicy:
    """How often and how long to retry.

    Args:
        max_retries: Retries after the first attempt (so ``max_retries + 1`` attempts in all).
        base_delay_s: Delay before the first retry; doubles each time, with +-50 % jitter.
        max_delay_s: Upper bound of a computed delay.
        max_retry_after_s: A ``Retry-After`` longer than this fails at once instead of stalling the turn.
        sleep: Awaitable sleep, injectable for tests.
        rand: Source of jitter in [0, 1), injectable for tests.
    """

    def __init__(
        self,
        max_retries: int,
        *,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_retry_after_s = max_retry_after_s
        self.sleep = sleep
        self.rand = rand

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (0-based) when the server gave no ``Retry-After``."""
        delay = min(self.base_delay_s * 2.0**retry, self.max_delay_s)
        return delay * (0.5 + self.rand())


def redact_url(url: str | httpx.URL) -> str:
    """``url`` without user info, query or fragment: safe to put in logs and error messages."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port is not None else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}".rstrip("/")


async def send_with_retries(
    send: Callable[[], Awaitable[HttpAnswer]],
    *,
    endpoint: str,
    policy: RetryPolicy,
    secrets: tuple[str, ...] = (),
) -> HttpAnswer:
    """Call ``send`` until it returns a 2xx response, retrying transient failures.

    Args:
        send: Performs one request (builds it afresh each time).
        endpoint: Redacted endpoint URL for messages (see :func:`redact_url`).
        policy: Retry counts, delays and the sleep function.
        secrets: Strings scrubbed from any server message quoted in an error (the API key).

    Raises:
        ModelUnavailableError: still failing after all retries (retryable), or a ``Retry-After`` too long to wait.
        ModelResponseError: the server refused the request (4xx other than 429, or another non-2xx status).
    """
    attempt = 0
    while True:
        started = time.perf_counter()
        try:
            response = await send()
        except TransientHttpError as exc:
            reason = f"{exc} after {time.perf_counter() - started:.1f}s"
            delay = policy.backoff(attempt)
        except UnreachableHttpError as exc:
            raise ModelUnavailableError(
                f"model endpoint {endpoint} cannot be reached ({exc}); check base_url", retryable=False
            ) from exc
        else:
            status = response.status
            if 200 <= status < 300:
                return response
            if status != 429 and status < 500:
                raise _refused(response, endpoint, secrets)
            reason = f"HTTP {status}"
            retry_after = _retry_after_s(response.headers.get("retry-after"))
            if retry_after is not None and retry_after > policy.max_retry_after_s:
                raise ModelUnavailableError(
                    f"model endpoint {endpoint} is rate limited (HTTP {status}); it asks to retry after "
                    f"{retry_after:.0f}s, longer than {policy.max_retry_after_s:.0f}s; try again later"
                )
            delay = retry_after if retry_after is not None else policy.backoff(attempt)
        if attempt >= policy.max_retries:
            raise ModelUnavailableError(
                f"model endpoint {endpoint} unavailable after {attempt + 1} attempt{'s' if attempt else ''} (last: {reason}); "
                "check that the model server is running, or raise max_retries"
            )
        logger.warning(
            "endpoint=<%s>, attempt=<%d>, reason=<%s>, delay_s=<%.2f> | retrying model call",
            endpoint,
            attempt + 1,
            reason,
            delay,
        )
        await policy.sleep(delay)
        attempt += 1


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _refused(response: HttpAnswer, endpoint: str, secrets: tuple[str, ...]) -> ModelResponseError:
    status = response.status
    if status in (401, 403):
        return ModelResponseError(f"model endpoint {endpoint} refused the credentials (HTTP {status}); check api_key")
    message = _server_message(response)
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    if len(message) > _MAX_ERROR_CHARS:
        message = message[:_MAX_ERROR_CHARS] + "…"
    return ModelResponseError(f"model endpoint {endpoint} rejected the request (HTTP {status}): {message}")


def _server_message(response: HttpAnswer) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text.strip() or response.reason
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return response.text.strip()
