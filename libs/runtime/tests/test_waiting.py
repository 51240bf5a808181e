"""`wait_event` keeps a cancellation that arrives together with the event (Python 3.11's
`asyncio.wait_for` loses it, and a service loop written with it then never stops)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from autopay_runtime.waiting import cancel_and_wait, wait_event


async def forever(event: asyncio.Event, wait) -> None:
    while True:
        await wait(event)
        event.clear()


async def cancelled_with_the_event_set(wait) -> bool:
    event = asyncio.Event()
    task = asyncio.create_task(forever(event, wait))
    await asyncio.sleep(0.01)  # the loop waits on the event
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=1.0)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return bool(done) and task.cancelled()


async def test_a_cancellation_racing_the_event_stops_the_loop():
    assert await cancelled_with_the_event_set(lambda e: wait_event(e, 10))


@pytest.mark.skipif(
    not hasattr(asyncio, "timeout") or __import__("sys").version_info >= (3, 12),
    reason="the lost cancellation is a Python 3.11 wait_for behaviour",
)
async def test_wait_for_loses_it_on_this_python():
    """Pins why `wait_event` exists: if this starts failing, wait_for was fixed."""

    async def with_wait_for(event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 10)

    assert not await cancelled_with_the_event_set(with_wait_for)


async def test_it_returns_whether_the_event_was_set():
    event = asyncio.Event()
    assert await wait_event(event, 0.01) is False
    event.set()
    assert await wait_event(event, 10) is True


async def test_cancel_and_wait_stops_a_task_that_swallowed_its_first_cancellation():
    swallowed = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)  # as a client retrying a cut-short command does

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    await cancel_and_wait(task, retry_s=0.05)
    assert task.cancelled() and swallowed == [True]


async def test_cancel_and_wait_retrieves_the_error_a_task_ended_with():
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.ensure_future(failing())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert isinstance(task.exception(), RuntimeError)
