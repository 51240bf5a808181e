"""Waiting for an event with a deadline, without losing a cancellation.

On Python 3.11, `asyncio.wait_for(event.wait(), t)` can return normally when the task is
cancelled in the same loop iteration as the event is set, and `asyncio.timeout` can turn a
cancellation that coincides with its own expiry into a `TimeoutError`: either way the
cancellation is lost, a loop written `while True: ... wait ...` goes on, and whoever stops it
waits forever. `wait_event` waits with `asyncio.wait`, which never cancels the caller to
enforce its deadline, so a cancellation of the caller always propagates.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; True when it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(0.0, seconds))
    finally:
        if not waiter.done():
            waiter.cancel()
    return event.is_set()


async def cancel_and_wait(task: asyncio.Future, retry_s: float = 0.5) -> None:
    """Cancel `task` and wait until it is over, cancelling it again every `retry_s` while it
    runs on: a cancellation a library swallowed (a Redis Cluster client retrying a command
    the cancellation cut short, one of the races above) must not leave shutdown waiting."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    if not task.cancelled():
        task.exception()  # retrieved: an error the task ended with was logged where it arose
