"""Waiting for an event with a deadline, without swallowing a cancellation.

On Python 3.11, `asyncio.wait_for(event.wait(), t)` can return normally when the task is
cancelled in the same loop iteration as the event is set: the cancellation is lost, and a loop
written `while True: ... await wait_for(...)` then never stops (its `stop()` waits forever).
`asyncio.timeout` propagates the cancellation, so the loops here use `wait_event` instead.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` have passed; True when it was set."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
