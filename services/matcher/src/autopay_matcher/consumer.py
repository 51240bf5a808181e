"""The credit consumer: a durable JetStream pull consumer driven by nats-py directly.

FastStream's per-message machinery (middlewares, logging, dependency injection, its publisher
stack) cost more CPU than deciding the credit. This loop keeps the same at-least-once contract
batch by batch: fetch up to `batch` credits, decide them in one Redis round trip, publish every
outcome event and wait for its PubAck, then ack each credit whose events were all stored.

No credit is dropped for an infrastructure failure. A credit whose decision or any publish
failed (Redis down, out of memory or hung; NATS not acknowledging) is nacked with a delay that
doubles with each delivery up to a cap, and the durable has no delivery limit, so it comes back
for as long as the outage lasts; the redelivery is a `duplicate` once Redis has the decision and
republishes the stored outcome. A batch waits at most `decision_timeout_s` for its decision, so
a hung Redis cannot stall the loop past the consumer's ack wait.

A message that is not a `credit.received` is recorded as a dead letter first (see
`deadletters`), and only terminated once that record has its PubAck.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from opentelemetry.trace import Span
from redis.exceptions import RedisError

from autopay_contracts import Credit
from autopay_matcher import metrics
from autopay_matcher.deadletters import NotACredit, dead_letter, decode_credit
from autopay_matcher.retry import redelivery_delay
from autopay_matcher.service import Matcher
from autopay_runtime import tracing
from autopay_runtime.logging import get_logger
from autopay_runtime.publishing import EventPublisher, PublishFailed
from autopay_runtime.pulling import PullConsumer
from autopay_store.orders import MatchOutcome

LINK_TIMEOUT_S = 1.0
"""How long a batch waits to read its orders' create traces before going on without links."""


class CreditConsumer:
    def __init__(
        self,
        jetstream: Callable[[], JetStreamContext],
        matcher: Matcher,
        publisher: EventPublisher,
        *,
        subject: str,
        stream: str,
        durable: str,
        config: ConsumerConfig,
        batch: int,
        fetch_timeout_s: float,
        retry_delay_s: float,
        retry_max_delay_s: float,
        decision_timeout_s: float,
        graceful_timeout_s: float,
    ) -> None:
        self.matcher = matcher
        self.publisher = publisher
        self.retry_delay_s = retry_delay_s
        self.retry_max_delay_s = retry_max_delay_s
        self.decision_timeout_s = decision_timeout_s
        self._pull = PullConsumer(
            jetstream,
            handle_batch=self.handle,
            stream=stream,
            subject=subject,
            durable=durable,
            config=config,
            batch=batch,
            fetch_timeout_s=fetch_timeout_s,
            retry_delay_s=retry_delay_s,
            graceful_timeout_s=graceful_timeout_s,
        )
        self._log = get_logger(task="credit-consumer")

    async def start(self) -> None:
        await self._pull.start()

    async def stop(self) -> None:
        """Lets a batch in hand finish (up to the graceful timeout); an idle fetch is cut."""
        await self._pull.stop()

    async def handle(self, msgs: list[Msg]) -> None:
        credits: list[Credit] = []
        delivered: list[Msg] = []
        poison: list[tuple[Msg, NotACredit]] = []
        for msg in msgs:
            try:
                credits.append(decode_credit(msg.data))
            except NotACredit as exc:
                poison.append((msg, exc))
            else:
                delivered.append(msg)
        if poison:
            await self._dead_letter(poison)
        if credits:
            await self._decide(delivered, credits)

    async def _decide(self, delivered: list[Msg], credits: list[Credit]) -> None:
        spans = [self._span(msg, credit) for msg, credit in zip(delivered, credits, strict=True)]
        traces = (
            [tracing.context_of(s) if s else None for s in spans] if tracing.enabled() else None
        )
        try:
            results: list = await asyncio.wait_for(
                self.matcher.handle_credits(credits, traces), self.decision_timeout_s
            )
        except Exception as exc:  # TimeoutError included: Redis hung
            results = [exc] * len(credits)
        if traces is not None:
            await self._link_creates(spans, results)
        for msg, credit, result, span in zip(delivered, credits, results, spans, strict=True):
            with tracing.attached(tracing.context_of(span) if span else None):
                await self._settle(msg, credit, result)
            if span:
                tracing.end(span, result)

    def _span(self, msg: Msg, credit: Credit) -> Span | None:
        """The credit's consumer span, in the trace the mail reader started (tracing on)."""
        if not tracing.enabled():
            return None
        return tracing.consumer_span(
            f"{msg.subject} process",
            msg.headers,
            **{"messaging.system": "nats", "autopay.credit_id": credit.credit_id},
        )

    async def _link_creates(self, spans: list[Span | None], results: list) -> None:
        """Links each paying credit's span to the trace of its order's create request. Best
        effort: a failure here costs the link, never the credit."""
        paid = [
            (span, result.record.order)
            for span, result in zip(spans, results, strict=True)
            if span is not None
            and isinstance(result, MatchOutcome)
            and result.kind == "matched"
            and result.record is not None
        ]
        if not paid:
            return
        try:
            created = await asyncio.wait_for(
                self.matcher.book.create_traces([order for _, order in paid]), LINK_TIMEOUT_S
            )
        except Exception:
            return
        for (span, _), parent in zip(paid, created, strict=True):
            if (linked := tracing.span_context(parent)) is not None:
                span.add_link(linked, {"autopay.link": "order.create"})

    async def _settle(self, msg: Msg, credit: Credit, result: object) -> None:
        """Acks a decided credit; nacks one that was not, with a delay that grows with its
        deliveries."""
        deliveries = _deliveries(msg)
        if not isinstance(result, Exception):
            await msg.ack()
            metrics.DELIVERIES.observe(deliveries)
            if deliveries > 1:
                self._log.info(
                    "credit decided after redeliveries",
                    credit_id=credit.credit_id,
                    deliveries=deliveries,
                )
            return
        cause = _cause(result)
        metrics.RETRIES.labels(cause=cause).inc()
        delay = redelivery_delay(deliveries, self.retry_delay_s, self.retry_max_delay_s)
        log = self._log.error if cause == "error" else self._log.warning
        log(
            "credit not decided, redelivered",
            credit_id=credit.credit_id,
            cause=cause,
            deliveries=deliveries,
            retry_in_s=delay,
            error=f"{type(result).__name__}: {result}",
        )
        await msg.nak(delay=delay)

    async def _dead_letter(self, poison: list[tuple[Msg, NotACredit]]) -> None:
        now = datetime.now(UTC)
        letters = [dead_letter(msg, str(exc), now) for msg, exc in poison]
        acks = await self.publisher.publish_many(letters)
        for (msg, exc), letter, ack in zip(poison, letters, acks, strict=True):
            where = {"source_seq": letter.source_seq, "subject": msg.subject, "kind": exc.kind}
            if isinstance(ack, Exception):
                delay = redelivery_delay(
                    _deliveries(msg), self.retry_delay_s, self.retry_max_delay_s
                )
                self._log.error(
                    "dead letter not stored; message redelivered", **where, error=str(ack)
                )
                await msg.nak(delay=delay)
                continue
            if not ack.duplicate:
                metrics.DEAD_LETTERS.labels(kind=exc.kind).inc()
            self._log.error(
                "message on the credit subject is not a credit; recorded as a dead letter",
                **where,
                dead_letter_seq=ack.seq,
                reason=letter.reason,
            )
            await msg.term()


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message (tests): count it as a first delivery
        return 1


def _cause(error: BaseException) -> str:
    if isinstance(error, RedisError):
        return "redis"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, PublishFailed):
        return "publish"
    return "error"
