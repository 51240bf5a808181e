"""Follows the MAILBOX_CONFIG stream from its first message and keeps following it.

Every replica reads the whole latest-per-mailbox configuration (an ephemeral ordered
consumer, not a shared durable one), so each can decide which mailboxes it watches. Until the
provisioning step has created the stream, it retries instead of failing the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from autopay_contracts import Event, Namespace, parse_event
from autopay_contracts.streams import MAILBOX_CONFIG
from autopay_runtime.logging import get_logger


class ConfigFeed:
    def __init__(
        self,
        js: Callable[[], JetStreamContext],
        ns: Namespace,
        on_event: Callable[[Event], Awaitable[None]],
        retry_s: float = 1.0,
    ) -> None:
        self._js = js
        self.ns = ns
        self.on_event = on_event
        self.retry_s = retry_s
        self.subscribed = False
        self.log = get_logger()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mailbox-config-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
        self.subscribed = False

    async def ready(self) -> bool:
        return self.subscribed

    async def _run(self) -> None:
        stream = MAILBOX_CONFIG.name(self.ns)
        while True:
            try:
                sub = await self._js().subscribe(
                    self.ns.mailbox_config(),
                    stream=stream,
                    ordered_consumer=True,
                    deliver_policy=DeliverPolicy.ALL,
                )
                break
            except NotFoundError:
                self.log.warning("mailbox_config.stream_missing", stream=stream)
            except Exception as exc:
                self.log.warning("mailbox_config.subscribe_failed", error=repr(exc)[:200])
            await asyncio.sleep(self.retry_s)
        self.subscribed = True
        try:
            async for msg in sub.messages:
                try:
                    event = parse_event(msg.data)
                except ValueError as exc:
                    self.log.error("mailbox_config.unreadable", error=str(exc)[:200])
                    continue
                try:
                    await self.on_event(event)
                except Exception as exc:
                    self.log.error("mailbox_config.apply_failed", error=repr(exc)[:200])
        finally:
            self.subscribed = False
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
