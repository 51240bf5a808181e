"""Pure webhook logic: the signature, how a response is classified and when the next attempt
happens. No I/O here. Which order events become webhooks, their `webhook-id` and their body are
the webhook contract (`autopay_contracts.webhooks`, re-exported here).

Response classification (after the Standard Webhooks guidance on retries):
- any 2xx → delivered;
- 410 Gone → exhausted at once (the receiver says the URL is dead);
- network error, timeout, 3xx (never followed), 429, 5xx → retry;
- every other 4xx → retry as well, on the same schedule. Money is at stake: a 401/403 after a
  secret rotation, a 404 during a deploy or a 400 from a receiver bug all heal once the merchant
  fixes their side, and the Standard Webhooks spec counts "everything else" as a plain failure.
  The schedule is finite, so a permanently broken receiver still ends in `exhausted`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from autopay_contracts.local_time import tashkent_iso
from autopay_contracts.webhooks import (
    OrderEvent,
    delivery_id_for,
    encode_body,
    wants_webhook,
    webhook_payload,
)

__all__ = [
    "OrderEvent",
    "delivery_id_for",
    "encode_body",
    "tashkent_iso",
    "wants_webhook",
    "webhook_payload",
]
SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret

# Standard Webhooks example schedule: delays after attempts 1..9 → 10 attempts over ~75.6 h.
DEFAULT_SCHEDULE_S: tuple[float, ...] = (
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)


# --- signing (Standard Webhooks v1) -------------------------------------------------------


def secret_key(secret: str) -> bytes:
    """`whsec_<base64>` → HMAC key bytes (padding tolerated, as the reference libraries do)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(
    *, msg_id: str, timestamp: int, body: bytes, secrets: list[str], user_agent: str
) -> dict[str, str]:
    """Headers of one attempt; every currently valid secret signs (rotation grace period)."""
    return {
        "content-type": "application/json",
        "user-agent": user_agent,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
    }


# --- outcome of one attempt, and what happens next ----------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt produced. `status_code` is None when no response arrived."""

    status_code: int | None = None
    error: str | None = None
    duration_s: float = 0.0
    retry_after_s: float | None = None
    timed_out: bool = False
    refused: bool = False  # the SSRF guard refused the destination: never retried


Verdict = Literal["delivered", "retry", "exhausted"]


@dataclass(frozen=True)
class AttemptDecision:
    verdict: Verdict
    error: str | None = None
    delay_s: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """`schedule[n-1]` is the delay after the n-th failed attempt; attempts = len(schedule)+1.

    Jitter is additive (`delay × U[0, jitter]`), so a retry never fires earlier than planned.
    A timeout or a 429 waits at least `overload_floor_s`. `Retry-After` raises the delay to the
    receiver's hint, the hint itself capped at `retry_after_cap_s`.
    """

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE_S
    jitter: float = 0.2
    overload_floor_s: float = 60.0
    retry_after_cap_s: float = 10 * 3600.0

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1

    def delay_after(self, attempt: int, result: AttemptResult, rand: float) -> float:
        base = self.schedule[attempt - 1]
        delay = base + base * self.jitter * rand
        if result.timed_out or result.status_code == 429:
            delay = max(delay, self.overload_floor_s)
        if result.retry_after_s is not None:
            delay = max(delay, min(result.retry_after_s, self.retry_after_cap_s))
        return delay


def describe_failure(result: AttemptResult) -> str:
    if result.error:
        return result.error
    code = result.status_code
    if code is not None and 300 <= code < 400:
        return f"HTTP {code} (redirects are not followed; update the webhook URL)"
    return f"HTTP {code}"


def decide(
    policy: RetryPolicy, attempt: int, result: AttemptResult, rand: float
) -> AttemptDecision:
    """`attempt` is 1-based; `rand` in [0, 1) feeds the jitter."""
    code = result.status_code
    if result.refused:
        return AttemptDecision("exhausted", result.error or "destination refused")
    if code is not None and 200 <= code < 300:
        return AttemptDecision("delivered")
    error = describe_failure(result)
    if code == 410:
        return AttemptDecision("exhausted", f"{error}: the receiver asked to stop (410 Gone)")
    if attempt >= policy.max_attempts:
        return AttemptDecision("exhausted", f"{error}; gave up after {attempt} attempts")
    return AttemptDecision("retry", error, policy.delay_after(attempt, result, rand))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
