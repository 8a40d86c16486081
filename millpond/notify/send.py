"""Posting to a webhook with retries; the outcome is returned, never raised."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from millpond.core.config import NotifyConfig, NotifyEvent
from millpond.core.logs import logger
from millpond.core.masking import register_secrets
from millpond.notify.formats import body


class RetryableStatus(Exception):
    """The receiver answered 429 or 5xx: worth another try."""


def where(url: str) -> str:
    """What a log line or the ledger may say about a webhook: its host, never its path (the
    path of a Slack or Teams webhook is its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def deliver(
    target: NotifyConfig, report: dict[str, Any], events: list[NotifyEvent]
) -> dict[str, Any]:
    """POST the report in the target's format; returns the outcome for the ledger."""
    url = target.webhook.get_secret_value()
    register_secrets([url])
    outcome: dict[str, Any] = {"webhook": where(url), "events": events, "format": target.format}
    attempts = 0

    def post() -> None:
        nonlocal attempts
        attempts += 1
        response = httpx.post(
            url, json=body(target.format, report, events), timeout=target.timeout_seconds
        )
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableStatus(f"HTTP {response.status_code}")
        response.raise_for_status()

    try:
        for attempt in Retrying(
            retry=retry_if_exception_type((httpx.TransportError, RetryableStatus)),
            stop=stop_after_attempt(target.retries + 1),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=False,
        ):
            with attempt:
                post()
        outcome.update(ok=True, attempts=attempts)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        outcome.update(ok=False, attempts=attempts, error=f"{type(last).__name__}: {last}"[:300])
    except httpx.HTTPStatusError as exc:
        outcome.update(ok=False, attempts=attempts, error=f"HTTP {exc.response.status_code}")
    except Exception as exc:
        outcome.update(ok=False, attempts=attempts, error=type(exc).__name__)
    if not outcome["ok"]:
        logger.warning(f"notification to {outcome['webhook']} failed: {outcome['error']}")
    return outcome
