"""So'm where a merchant reads an amount (the API, webhooks), tiyin (1/100 so'm) everywhere else."""

from __future__ import annotations

TIYIN_PER_SOM = 100


def whole_som(tiyin: int) -> int:
    """An order's amount in so'm: orders are made in whole so'm, so no tiyin is dropped."""
    return tiyin // TIYIN_PER_SOM


def som(tiyin: int | None) -> int | float | None:
    """An amount as the API shows it: whole so'm as an int, else with its tiyin."""
    if tiyin is None:
        return None
    return tiyin // TIYIN_PER_SOM if tiyin % TIYIN_PER_SOM == 0 else tiyin / TIYIN_PER_SOM
