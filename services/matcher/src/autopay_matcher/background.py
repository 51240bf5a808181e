"""A background loop of the app (the expiry scanner, the reconciler): started after the broker,
stopped at shutdown.

`stop` sets a flag that the loop checks between passes and that ends its pauses, and also
cancels the task: a cancellation alone is not enough, because a client library may swallow it
in the middle of a call, leaving the loop to run on.
"""

from __future__ import annotations

import asyncio

from autopay_runtime.waiting import cancel_and_wait, wait_event


class BackgroundLoop:
    name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._stopped = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopped.set()
        if task is not None:
            await cancel_and_wait(task)

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the loop is stopped meanwhile."""
        await wait_event(self._stopped, seconds)

    async def _run(self) -> None:
        raise NotImplementedError
