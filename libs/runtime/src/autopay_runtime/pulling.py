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


async def bind_first_time(
    js: Callable[[], JetStreamContext],
    stream: str,
    subject: str,
    durable: str,
    config: ConsumerConfig,
) -> JetStreamContext.PullSubscription | None:
    """`bind_durable` once, at start: the subscription, or None (logged) when it failed; the
    pull loop then keeps trying (`bind_when_possible`) instead of the service's start failing."""
    try:
        return await bind_durable(js(), stream, subject, durable, config)
    except Exception:
        get_logger(consumer=durable).exception(
            "binding the durable consumer failed at start; retried in the background"
        )
        return None


async def bind_when_possible(
    js: Callable[[], JetStreamContext],
    stream: str,
    subject: str,
    durable: str,
    config: ConsumerConfig,
    *,
    stopping: Callable[[], bool],
    retry_delay_s: float,
) -> JetStreamContext.PullSubscription | None:
    """`bind_durable`, retried every `retry_delay_s` while it fails (NATS away, a JetStream
    cluster electing its leader), until it works or `stopping()`: None then. A pull loop binds
    here, in its own task, so a service whose NATS is away at start starts anyway and begins
    to consume once it can, instead of failing its startup and standing idle."""
    failures = 0
    while not stopping():
        try:
            return await bind_durable(js(), stream, subject, durable, config)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            log = get_logger(consumer=durable)
            if failures == 1:
                log.exception("binding the durable consumer failed; retried", stream=stream)
            else:
                log.warning("binding the durable consumer failed again", error=repr(exc)[:200])
            await asyncio.sleep(retry_delay_s)
    return None


async def end_pull(
    task: asyncio.Task | None, sub: JetStreamContext.PullSubscription | None
) -> None:
    """Stops a pull loop: its task cancelled and waited for, then its subscription dropped
    (the durable stays, with every unacked message to be delivered again)."""
    if task is not None:
        await cancel_and_wait(task)
    if sub is not None:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


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
        self.handle_batch = handle_batch
        self.jetstream = jetstream
        self.ordered = ordered
        self.graceful_timeout_s = graceful_timeout_s
        self.handle = handle
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.config = config
        self.batch = batch
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_delay_s = retry_delay_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._busy = False
        self._log = get_logger(consumer=durable)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._sub = await bind_first_time(
            self.jetstream, self.stream, self.subject, self.durable, self.config
        )
        self._task = asyncio.create_task(self._run(), name=f"pull-{self.durable}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        if task is not None and self._busy:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), self.graceful_timeout_s)
        await end_pull(task, None)
        sub, self._sub = self._sub, None
        await end_pull(None, sub)

    async def _run(self) -> None:
        self._sub = self._sub or await bind_when_possible(
            self.jetstream,
            self.stream,
            self.subject,
            self.durable,
            self.config,
            stopping=lambda: self._stopping,
            retry_delay_s=self.retry_delay_s,
        )
        while self._sub is not None and not self._stopping:
            try:
                msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout_s)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
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
        except asyncio.CancelledError:
            raise
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
