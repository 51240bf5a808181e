"""The reconciler: every credit in the CREDITS stream ends with a decision.

At start and every `interval_s`, a pass reads the stream forward from a watermark (see
`scan`), and decides, through the same `Matcher` path as the consumer, every received credit
that has no decision event after it, is older than `min_age_s`, and is no longer the
consumer's: its sequence is at or below the durable consumer's ack floor (the consumer acked or
terminated it, or was created after it), or the durable does not exist. A credit still above
the floor is being retried by the consumer; the pass only reports it (its age is a metric), so
a Redis outage is not worked twice.

Deciding again is harmless: the order book answers `duplicate` with the first outcome for a
credit it already decided, and the outcome events have deterministic ids. So replicas need no
more than a lease to avoid doing the same work at once. Without Redis the pass still reads the
stream and updates the metrics; its decisions fail and are tried again next period.

The watermark is the sequence below which every received credit is known decided; it is kept
in memory and in Redis, and only moves up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from autopay_contracts import Credit
from autopay_matcher import metrics
from autopay_matcher.background import BackgroundLoop
from autopay_matcher.deadletters import NotACredit, decode_credit
from autopay_matcher.scan import Received, scan_credits
from autopay_matcher.service import Clock, Matcher, system_clock
from autopay_runtime.logging import get_logger
from autopay_store.reconcile import ReconcileState


@dataclass(frozen=True)
class PassReport:
    result: str
    """`ok`, `failed` (some credit could not be decided, or Redis was unreachable) or `skipped`
    (another replica held the lease)."""
    watermark: int = 0
    found: int = 0
    """Credits found undecided, old enough and no longer the consumer's."""
    decided: int = 0
    remaining: int = 0
    """Credits still without a decision after the pass (the consumer's in-flight included)."""
    oldest_age_s: float = 0.0


class Reconciler(BackgroundLoop):
    name = "reconciler"

    def __init__(
        self,
        jetstream: Callable[[], JetStreamContext],
        matcher: Matcher,
        state: ReconcileState,
        *,
        stream: str,
        subject: str,
        durable: str,
        interval_s: float,
        min_age_s: float,
        batch: int,
        decision_timeout_s: float,
        wall_clock: Clock = system_clock,
    ) -> None:
        super().__init__()
        self.jetstream = jetstream
        self.matcher = matcher
        self.state = state
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.interval_s = interval_s
        self.min_age_s = min_age_s
        self.batch = batch
        self.decision_timeout_s = decision_timeout_s
        self.wall_clock = wall_clock
        self.lease_s = max(2 * interval_s, 60.0)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._watermark = 0
        self._log = get_logger(task="reconciler")

    # --- background -----------------------------------------------------------------------

    async def _run(self) -> None:
        while not self.stopping:
            try:
                await self.reconcile()
            except Exception:
                metrics.RECONCILER_PASSES.labels(result="failed").inc()
                self._log.exception("reconciler pass failed; trying again next period")
            await self.pause(self.interval_s)

    # --- one pass -------------------------------------------------------------------------

    async def reconcile(self) -> PassReport:
        leased = await self._lease()
        if leased is False:
            metrics.RECONCILER_UNDECIDED.set(0)
            metrics.OLDEST_UNDECIDED_AGE.set(0)
            metrics.RECONCILER_PASSES.labels(result="skipped").inc()
            return PassReport("skipped", self._watermark)
        try:
            report = await self._pass(redis_ok=leased is True)
        finally:
            if leased:
                with contextlib.suppress(Exception):
                    await self.state.release(self.holder)
        metrics.RECONCILER_PASSES.labels(result=report.result).inc()
        return report

    async def _lease(self) -> bool | None:
        """True: this replica runs the pass; False: another one does; None: Redis unreachable
        (the pass runs anyway, to keep the metrics true; its decisions will fail)."""
        try:
            return await self.state.acquire(self.holder, self.lease_s)
        except Exception as exc:
            self._log.warning("reconciler lease unavailable", error=f"{type(exc).__name__}")
            return None

    async def _pass(self, redis_ok: bool) -> PassReport:
        if redis_ok:
            self._watermark = max(self._watermark, await self.state.watermark())
        js = self.jetstream()
        floor = await self._consumer_floor(js)
        scan = await scan_credits(js, self.stream, self.subject, self._watermark)
        now = self.wall_clock()
        due = {
            credit_id: received
            for credit_id, received in scan.undecided.items()
            if received.seq <= floor and _age(received, now) >= self.min_age_s
        }
        metrics.RECONCILER_UNDECIDED.set(len(due))
        decided, not_credits = await self._decide(due)
        remaining = [
            received
            for credit_id, received in scan.undecided.items()
            if credit_id not in decided and credit_id not in not_credits
        ]
        oldest = max((_age(r, now) for r in remaining), default=0.0)
        metrics.OLDEST_UNDECIDED_AGE.set(oldest)
        mark = min(r.seq for r in remaining) - 1 if remaining else scan.last_seq
        self._watermark = max(self._watermark, mark)
        if redis_ok:
            self._watermark = await self.state.raise_watermark(self._watermark)
        failed = len(due) - len(decided) - len(not_credits)
        report = PassReport(
            result="ok" if redis_ok and failed == 0 else "failed",
            watermark=self._watermark,
            found=len(due),
            decided=len(decided),
            remaining=len(remaining),
            oldest_age_s=oldest,
        )
        log = self._log.warning if due or oldest > self.min_age_s else self._log.debug
        log(
            "reconciler pass",
            result=report.result,
            read=scan.read,
            found=report.found,
            decided=report.decided,
            remaining=report.remaining,
            oldest_undecided_age_s=round(oldest, 1),
            watermark=report.watermark,
        )
        return report

    async def _consumer_floor(self, js: JetStreamContext) -> float:
        """Credits up to this sequence are no longer the consumer's to decide."""
        try:
            info = await js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            return float("inf")
        return info.ack_floor.stream_seq if info.ack_floor else 0

    async def _decide(self, due: dict[str, Received]) -> tuple[set[str], set[str]]:
        """Decide the due credits in batches; returns the ids decided and the ids that are not
        credits at all. Stops at the first batch whose Redis call fails as a whole."""
        decided: set[str] = set()
        not_credits: set[str] = set()
        credits: list[Credit] = []
        for credit_id, received in sorted(due.items(), key=lambda item: item[1].seq):
            try:
                credits.append(decode_credit(received.data))
            except NotACredit as exc:
                not_credits.add(credit_id)
                self._log.warning(
                    "not a credit; left to the consumer", seq=received.seq, error=str(exc)
                )
        for start in range(0, len(credits), self.batch):
            chunk = credits[start : start + self.batch]
            try:
                results = await asyncio.wait_for(
                    self.matcher.handle_credits(chunk), self.decision_timeout_s
                )
            except Exception as exc:
                self._log.warning(
                    "reconciler could not decide credits",
                    credits=len(credits) - start,
                    error=f"{type(exc).__name__}: {exc}",
                )
                break
            for credit, result in zip(chunk, results, strict=True):
                if isinstance(result, Exception):
                    continue
                decided.add(credit.credit_id)
                metrics.RECONCILER_DECIDED.inc()
                self._log.warning(
                    "credit decided by the reconciler",
                    credit_id=credit.credit_id,
                    outcome=result.kind,
                )
        return decided, not_credits


def _age(received: Received, now: datetime) -> float:
    return max(0.0, (now - received.stored_at).total_seconds())
