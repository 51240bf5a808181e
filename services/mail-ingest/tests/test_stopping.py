"""Stopping a watcher when an inner await swallowed its cancellation (Python 3.11's
`asyncio.wait_for` returns the result instead of raising when the cancel arrives just as the
awaited future completes). Survives: a removed or lost mailbox whose watcher would otherwise
keep its IMAP connection, and a shutdown that would otherwise hang on it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from autopay_mail_ingest.supervisor import _cancel
from autopay_mail_ingest.watcher import _raise_if_cancelling


async def swallow_one_cancel() -> None:
    with contextlib.suppress(asyncio.CancelledError):  # what the race in wait_for amounts to
        await asyncio.sleep(30)


async def test_a_watcher_that_swallows_one_cancellation_is_still_stopped():
    async def stubborn() -> None:
        await swallow_one_cancel()
        await asyncio.sleep(30)  # goes on as if nothing happened

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(_cancel(task, retry_s=0.05), 5)
    assert task.cancelled()


async def test_no_imap_step_starts_once_a_cancellation_is_pending():
    steps = []

    async def watcher() -> None:
        await swallow_one_cancel()
        _raise_if_cancelling()
        steps.append("next IMAP step")

    task = asyncio.create_task(watcher())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == []


async def test_a_running_task_without_a_cancellation_goes_on():
    _raise_if_cancelling()  # no cancel requested: nothing happens
