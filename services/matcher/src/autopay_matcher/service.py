"""The matcher's work: decide each credit, expire overdue orders, publish what happened."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from opentelemetry.context import Context

from autopay_contracts import Credit
from autopay_contracts.events import UNOWNED
from autopay_matcher import metrics
from autopay_matcher.background import BackgroundLoop
from autopay_matcher.outcomes import expired_event, needs_owner, outcome_events
from autopay_matcher.retry import redelivery_delay
from autopay_runtime import tracing
from autopay_runtime.logging import get_logger
from autopay_runtime.publishing import EventPublisher
from autopay_store.mailboxes import MailboxOwners
from autopay_store.orders import MatchOutcome, OrderBook

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class Matcher:
    def __init__(
        self, book: OrderBook, publisher: EventPublisher, clock: Clock = system_clock
    ) -> None:
        self.book = book
        self.publisher = publisher
        self.clock = clock
        self.mailboxes = MailboxOwners(book.redis, book.keys)
        self._log = get_logger()

    async def _owners(self, credits: list[Credit], decided: list) -> list[str]:
        """The merchant each decision is published under: the paid order's (in the event),
        the credit's own when its reader knew it (sandbox), else the mailbox's owner."""
        lookup = [
            c.mailbox_id
            for c, outcome in zip(credits, decided, strict=True)
            if not isinstance(outcome, Exception) and needs_owner(outcome) and not c.merchant_id
        ]
        found = await self.mailboxes.owners(lookup) if lookup else {}
        return [c.merchant_id or found.get(c.mailbox_id) or UNOWNED for c in credits]

    async def handle_credit(self, credit: Credit) -> MatchOutcome:
        """Decide the credit in Redis, then publish its outcome; any failure raises so the
        message is redelivered, and the redelivery republishes the stored decision."""
        started = time.perf_counter()
        outcome = await self.book.match_credit(credit, self.clock())
        [owner] = await self._owners([credit], [outcome])
        await asyncio.gather(
            *(self.publisher.publish(event) for event in outcome_events(credit, outcome, owner))
        )
        self._decided(credit, outcome, started)
        return outcome

    async def handle_credits(
        self, credits: list[Credit], traces: Sequence[Context | None] | None = None
    ) -> list[MatchOutcome | Exception]:
        """`handle_credit` for a batch: one Redis round trip decides every credit, then all the
        outcome events are published concurrently. Result i is credit i's outcome when every
        one of its events was stored, else the error that stopped it (that credit must be
        redelivered; the others are done). A failure of the whole Redis call raises.

        `traces[i]` is credit i's trace: its outcome events carry it on, its log line names it."""
        started = time.perf_counter()
        decided = await self.book.match_credits(credits, self.clock())
        owners = await self._owners(credits, decided)
        events = [
            [] if isinstance(outcome, Exception) else outcome_events(credit, outcome, owner)
            for credit, outcome, owner in zip(credits, decided, owners, strict=True)
        ]
        each = traces if traces is not None else [None] * len(credits)
        parents = [trace for trace, evs in zip(each, events, strict=True) for _ in evs]
        acks = iter(await self.publisher.publish_many([e for evs in events for e in evs], parents))
        results: list[MatchOutcome | Exception] = []
        for credit, outcome, credit_events, trace in zip(
            credits, decided, events, each, strict=True
        ):
            failed = [a for a in (next(acks) for _ in credit_events) if isinstance(a, Exception)]
            if isinstance(outcome, Exception):
                results.append(outcome)
            elif failed:
                results.append(failed[0])
            else:
                with tracing.attached(trace):
                    self._decided(credit, outcome, started)
                results.append(outcome)
        return results

    def _decided(self, credit: Credit, outcome: MatchOutcome, started: float) -> None:
        metrics.CREDITS.labels(outcome=outcome.kind).inc()
        metrics.MATCH_SECONDS.observe(time.perf_counter() - started)
        record = outcome.record
        if outcome.kind == "matched" and record is not None and record.paid_at is not None:
            metrics.ORDERS_PAID.labels(late="true" if record.late else "false").inc()
            waited = (record.paid_at - credit.received_at).total_seconds()
            metrics.CONFIRMATION_SECONDS.observe(max(0.0, waited))
        self._log.info(
            "credit decided",
            credit_id=credit.credit_id,
            mailbox_id=credit.mailbox_id,
            outcome=outcome.kind,
            original=outcome.original,
            order_id=outcome.record.order.order_id if outcome.record else None,
            late=outcome.record.late if outcome.record else None,
            candidates=list(outcome.candidate_order_ids) or None,
            reason=outcome.reason,
        )

    async def expire_due(self, lease_s: float = 30.0, limit: int = 500) -> int:
        """One scanner pass: claim overdue deadlines (leased, so replicas split them), expire,
        publish `order.expired`, and only then drop the deadline. Returns how many were due."""
        now = self.clock()
        order_ids = await self.book.claim_due(now, lease_s=lease_s, limit=limit)
        for order_id in order_ids:
            record = await self.book.expire(order_id, now)
            if record is not None:
                await self.publisher.publish(expired_event(record))
                metrics.ORDERS_EXPIRED.inc()
                get_logger(order_id=order_id).info("order expired")
            else:
                current = await self.book.get(order_id)
                if current is not None and current.status == "waiting":
                    continue  # not due by its own clock yet; the lease brings it back
            await self.book.clear_deadline(order_id)
        return len(order_ids)


class ExpiryScanner(BackgroundLoop):
    """Runs `Matcher.expire_due` every `interval_s` in the background of the app.

    A failing pass (Redis down or hung) is retried with a doubling pause, up to
    `max_backoff_s`, for as long as it fails; the first pass that works resets the pace, so
    the scanner resumes by itself after an outage of any length."""

    name = "expiry-scanner"

    def __init__(
        self,
        matcher: Matcher,
        interval_s: float,
        lease_s: float = 30.0,
        batch: int = 500,
        max_backoff_s: float = 30.0,
    ) -> None:
        super().__init__()
        self.matcher = matcher
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.batch = batch
        self.max_backoff_s = max_backoff_s

    async def _run(self) -> None:
        log = get_logger(task="expiry-scanner")
        failures = 0
        while not self.stopping:
            try:
                due = await self.matcher.expire_due(self.lease_s, self.batch)
            except Exception as exc:
                failures += 1
                metrics.EXPIRY_FAILURES.inc()
                pause = redelivery_delay(failures, self.interval_s, self.max_backoff_s)
                if failures == 1:
                    log.exception("expiry pass failed; retrying", retry_in_s=pause)
                else:
                    log.warning(
                        "expiry pass failed again",
                        failures=failures,
                        retry_in_s=pause,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                await self.pause(pause)
                continue
            if failures:
                log.info("expiry passes work again", after_failures=failures)
                failures = 0
            if due < self.batch:
                await self.pause(self.interval_s)
