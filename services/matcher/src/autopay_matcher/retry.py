"""How long to wait before trying again: capped exponential backoff, no attempt limit."""

from __future__ import annotations


def redelivery_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """`base_s` after the first attempt, doubling with each further one, never above `cap_s`.

    `attempt` counts from 1 (a credit's `num_delivered`, a scanner's consecutive failures)."""
    exponent = min(max(attempt, 1) - 1, 30)  # 2**30 × any sane base is past every cap
    return min(cap_s, base_s * 2**exponent)
