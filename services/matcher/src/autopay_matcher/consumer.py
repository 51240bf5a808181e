"""The credit consumer: a durable JetStream pull consumer driven by nats-py directly.

FastStream's per-message machinery (middlewares, logging, dependency injection, its publisher
stack) cost more CPU than deciding the credit. This loop keeps the same at-least-once contract
batch by batch: fetch up to `batch` credits, decide them in one Redis round trip, publish every
outcome event and wait for its PubAck, then ack each credit whose events were all stored. A
credit whose decision or any publish failed is nacked with a delay (the redelivery is a
`duplicate` and republishes the stored decision); an undecodable message is terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from redis.exceptions import RedisError

from autopay_contracts import Credit, CreditReceived, parse_event
from autopay_matcher import metrics
from autopay_matcher.service import Matcher
from autopay_runtime.logging import get_logger


class CreditConsumer:
    def __init__(
        self,
        jetstream: Callable[[], JetStreamContext],
        matcher: Matcher,
        *,
        subject: str,
        stream: str,
        durable: str,
        config: ConsumerConfig,
        batch: int,
        fetch_timeout_s: float,
        retry_delay_s: float,
        graceful_timeout_s: float,
    ) -> None:
        self.jetstream = jetstream
        self.matcher = matcher
        self.subject = subject
        self.stream = stream
        self.durable = durable
        self.config = config
        self.batch = batch
        self.fetch_timeout_s = fetch_timeout_s
        self.retry_delay_s = retry_delay_s
        self.graceful_timeout_s = graceful_timeout_s
        self._sub: JetStreamContext.PullSubscription | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._busy = False
        self._log = get_logger(task="credit-consumer")

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._sub = await self.jetstream().pull_subscribe(
            self.subject, self.durable, stream=self.stream, config=self.config
        )
        self._task = asyncio.create_task(self._run(), name="credit-consumer")

    async def stop(self) -> None:
        """Lets a batch in hand finish (up to the graceful timeout); an idle fetch is cut."""
        task, self._task = self._task, None
        self._stopping = True
        if task is not None:
            if self._busy:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(task), self.graceful_timeout_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _run(self) -> None:
        assert self._sub is not None
        while not self._stopping:
            try:
                msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout_s)
            except TimeoutError:
                continue
            except Exception:
                self._log.exception("fetching credits failed")
                await asyncio.sleep(self.retry_delay_s)
                continue
            self._busy = True
            try:
                await self.handle(msgs)
            except Exception:
                self._log.exception("credit batch failed; unacked credits are redelivered")
            finally:
                self._busy = False

    async def handle(self, msgs: list[Msg]) -> None:
        credits: list[Credit] = []
        delivered: list[Msg] = []
        for msg in msgs:
            credit = _credit(msg)
            if credit is None:
                self._log.error("undecodable credit event, dropped", subject=msg.subject)
                await msg.term()
            else:
                credits.append(credit)
                delivered.append(msg)
        if not credits:
            return
        try:
            results: list = await self.matcher.handle_credits(credits)
        except Exception as exc:
            results = [exc] * len(credits)
        for msg, credit, result in zip(delivered, credits, results, strict=True):
            if not isinstance(result, Exception):
                await msg.ack()
                continue
            if isinstance(result, RedisError):
                metrics.RETRIES.labels(cause="redis").inc()
                self._log.warning(
                    "redis unavailable, credit redelivered",
                    credit_id=credit.credit_id,
                    error=f"{type(result).__name__}: {result}",
                )
            else:
                metrics.RETRIES.labels(cause="error").inc()
                self._log.error(
                    "credit failed, redelivered",
                    credit_id=credit.credit_id,
                    error=f"{type(result).__name__}: {result}",
                )
            await msg.nak(delay=self.retry_delay_s)


def _credit(msg: Msg) -> Credit | None:
    try:
        event = parse_event(msg.data)
    except Exception:
        return None
    return event.credit if isinstance(event, CreditReceived) else None
