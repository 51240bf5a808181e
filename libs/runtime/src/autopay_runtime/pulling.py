"""Durable JetStream pull consumers driven by nats-py directly, batch by batch.

FastStream's per-message subscriber machinery (middlewares, context, dependency injection)
costs more CPU than what most consumers do with a message, and it acks each message on its
own: one socket write, and one wake-up of the NATS server, a message. Here a loop fetches up
to `batch` messages at once and hands them to the handler in stream order; the acks a batch
sends without waiting on I/O between them leave in one write.

The durable is made sure of before the first fetch (`ensure_durable`): `pull_subscribe` alone
would bind to an existing durable as it is, so a consumer an older version created (say with a
delivery limit) would keep its old settings after an upgrade. The server updates the editable
fields of an existing consumer in place (delivery limit, ack wait, backoff, filter); the others
(deliver policy, start sequence or time) keep their current values, so an operator's choice
there is not refused at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, ConsumerInfo
from nats.js.errors import NotFoundError

from autopay_runtime import tracing
from autopay_runtime.logging import get_logger
from autopay_runtime.waiting import cancel_and_wait

_EDITABLE = ("ack_wait", "max_deliver", "backoff", "filter_subject", "filter_subjects")


async def ensure_durable(
    js: JetStreamContext, stream: str, subject: str, durable: str, config: ConsumerConfig
) -> ConsumerInfo:
    wanted = dataclasses.replace(
        config, name=durable, durable_name=durable, filter_subject=subject, filter_subjects=None
    )
    try:
        current = await js.consumer_info(stream, durable)
    except NotFoundError:
        return await js.add_consumer(stream, wanted)
    updated = dataclasses.replace(
        current.config, **{field: getattr(wanted, field) for field in _EDITABLE}
    )
    if _same(current.config, updated):
        return current
    info = await js.add_consumer(stream, updated)
    get_logger(consumer=durable).info(
        "durable consumer updated",
        max_deliver=info.config.max_deliver,
        ack_wait_s=info.config.ack_wait,
        was_max_deliver=current.config.max_deliver,
    )
    return info


def _same(current: ConsumerConfig, wanted: ConsumerConfig) -> bool:
    def norm(cfg: ConsumerConfig) -> tuple:
        return (
            cfg.ack_wait,
            cfg.max_deliver,
            tuple(cfg.backoff or ()),
            cfg.filter_subject or None,
            tuple(cfg.filter_subjects or ()),
        )

    return norm(current) == norm(wanted)


async def bind_durable(
    js: JetStreamContext, stream: str, subject: str, durable: str, config: ConsumerConfig
) -> JetStreamContext.PullSubscription:
    """A pull subscription on the durable, made sure of first (`ensure_durable`). Its inbox
    is under the connection's own inbox prefix (replies only this service may read)."""
    await ensure_durable(js, stream, subject, durable, config)
    return await js.pull_subscribe_bind(durable=durable, stream=stream)


class PullConsumer:
    """One durable pull consumer: `handle(msg)` for each message fetched, one after the other
    in stream order, or with `ordered=False` all the messages of a batch at once (as a
    FastStream pull subscriber does: their commands then share round trips). With
    `handle_batch` instead, that gets each fetched batch whole and settles all of it.

    `handle` settles its message (ack, nak, term); one that raises leaves it unacked, and the
    server delivers it again after the ack wait. A failed fetch (NATS away) is logged and
    retried after `retry_delay_s`, for as long as it fails. `stop` lets a batch in hand finish
    for up to `graceful_timeout_s` (an idle fetch is cut at once)."""

    def __init__(
        self,
        jetstream: Callable[[], JetStreamContext],
        handle: Callable[[Msg], Awaitable[None]] | None = None,
        *,
        stream: str,
        subject: str,
        durable: str,
        config: ConsumerConfig,
        batch: int = 100,
        fetch_timeout_s: float = 1.0,
        retry_delay_s: float = 2.0,
        ordered: bool = True,
        graceful_timeout_s: float = 10.0,
        handle_batch: Callable[[list[Msg]], Awaitable[None]] | None = None,
    ) -> None:
        if (handle is None) == (handle_batch is None):
            raise TypeError("PullConsumer takes a handle or a handle_batch")
        self.jetstream = jetstream
        self.handle = handle
        self.handle_batch = handle_batch
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.config = config
        self.batch = batch
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_delay_s = retry_delay_s
        self.ordered = ordered
        self.graceful_timeout_s = graceful_timeout_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._busy = False
        self._bind_failures = 0
        self._log = get_logger(consumer=durable)

    async def start(self) -> None:
        """Binds the durable and starts the loop. A bind that fails (NATS away, a JetStream
        cluster electing its leader) is retried by the loop every `retry_delay_s`, instead of
        the service's start failing and the service standing idle."""
        if self._task is not None:
            return
        self._stopping = False
        await self._bind()
        self._task = asyncio.create_task(self._run(), name=f"pull-{self.durable}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            if self._busy:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(task), self.graceful_timeout_s)
            await cancel_and_wait(task)
        # the durable stays, with every unacked message to be delivered again
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _bind(self) -> None:
        """One try at `bind_durable`; a failure is logged (the first of a run whole)."""
        try:
            self._sub = await bind_durable(
                self.jetstream(), self.stream, self.subject, self.durable, self.config
            )
        except Exception as exc:
            self._bind_failures += 1
            if self._bind_failures == 1:
                self._log.exception(
                    "binding the durable consumer failed; retried", stream=self.stream
                )
            else:
                self._log.warning(
                    "binding the durable consumer failed again", error=repr(exc)[:200]
                )
        else:
            self._bind_failures = 0

    async def _run(self) -> None:
        while self._sub is None and not self._stopping:
            await asyncio.sleep(self.retry_delay_s)
            await self._bind()
        while self._sub is not None and not self._stopping:
            try:
                msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout_s)
            except TimeoutError:
                continue
            except Exception:
                self._log.exception("fetching failed; retried", stream=self.stream)
                await asyncio.sleep(self.retry_delay_s)
                continue
            self._busy = True
            try:
                if self.handle_batch is not None:
                    await self._batch(msgs)
                elif self.ordered:
                    for msg in msgs:
                        await self._handle_traced(msg)
                else:
                    await asyncio.gather(*(self._handle_traced(msg) for msg in msgs))
            finally:
                self._busy = False

    async def _batch(self, msgs: list[Msg]) -> None:
        assert self.handle_batch is not None
        try:
            await self.handle_batch(msgs)
        except Exception:
            self._log.exception("batch failed; its unacked messages are delivered again")

    async def _handle_traced(self, msg: Msg) -> None:
        """`handle(msg)` inside the message's consumer span (tracing on): the child of the
        trace its headers carry, as FastStream's telemetry middleware makes it."""
        span = None
        if tracing.enabled():
            span = tracing.consumer_span(
                f"{msg.subject} process", msg.headers, **{"messaging.system": "nats"}
            )
        result: BaseException | None = None
        try:
            with tracing.attached(tracing.context_of(span) if span else None):
                assert self.handle is not None
                await self.handle(msg)
        except asyncio.CancelledError as exc:
            result = exc
            raise
        except Exception as exc:
            result = exc
            self._log.exception("message not handled; delivered again after ack wait")
        finally:
            if span is not None:
                tracing.end(span, result)
