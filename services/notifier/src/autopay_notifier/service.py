"""The notifier's service layer: accept order events, run delivery attempts, schedule retries.

Design (why it is durable and why one dead endpoint cannot hold up the others):

- **Durable first, then ack.** An order event that wants a webhook is written to Redis as a
  delivery (payload, URL, state) and put in the `due` ZSET *before* the JetStream message is
  acked. A redelivered event finds the delivery already there and does nothing, so the same
  fact never produces a second delivery (the receiver may still see a retry of the same
  `webhook-id` if we crash between its 2xx and our bookkeeping: at-least-once, as Standard
  Webhooks expects).
- **Retries live in Redis, not in JetStream.** A retry 20 h away is just a ZSET score; the
  consumer is not tied up with `nack(delay)` timers that count against `max_deliver` and
  `max_ack_pending` and cannot be inspected. Every replica runs a scheduler loop that claims due
  deliveries atomically (Lua) with a lease: the score moves to the lease expiry, so a replica
  that dies mid-attempt loses nothing — the delivery is simply due again when the lease ends.
- **No polling delay on the first attempt.** The consumer enqueues the delivery already leased
  to this process and starts the attempt at once; the poller only handles retries, deferrals
  and the leftovers of dead replicas.
- **Isolation.** Attempts run in per-endpoint lanes (`host:port`): at most `per_host_in_flight`
  concurrent attempts and `per_host_queue` waiting claims per endpoint; beyond that the claim
  is handed back to the schedule (`defer`, not counted as an attempt). The process-wide cap
  `max_outstanding` bounds active + queued claims, so a black-holed endpoint occupies at most
  `per_host_in_flight + per_host_queue` of it and each of its attempts ends after the 15 s
  total timeout; every other endpoint keeps its own lane (and its own small connection pool).
  A claim refused by a full lane comes back after about the time the lane needs to drain
  (from its average attempt duration), so a black hole's overflow is not re-claimed in a loop.
- **Leases are renewed** every `lease_s / 3` for every claim this process holds (running or
  waiting in a lane), so a long lane wait never lets another replica take over a live claim,
  while a dead replica's claims come back within `lease_s`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from autopay_contracts import Event, WebhookDelivered, WebhookExhausted, WebhookFailed
from autopay_notifier import metrics
from autopay_notifier.domain import (
    AttemptDecision,
    AttemptResult,
    OrderEvent,
    RetryPolicy,
    decide,
    delivery_id_for,
    encode_body,
    wants_webhook,
    webhook_headers,
    webhook_payload,
)
from autopay_notifier.ssrf import DestinationRefused, GuardPolicy, check_url
from autopay_runtime.waiting import cancel_and_wait, wait_event
from autopay_store.deliveries import DeliveryClaim, DeliveryStore, NewDelivery

log = structlog.get_logger("autopay_notifier")

SecretsFor = Callable[[str, datetime], Awaitable[list[str]]]


class Sender(Protocol):
    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult: ...


class EventPublisher(Protocol):
    async def publish(self, event: Event) -> None: ...


@dataclass(frozen=True)
class Limits:
    max_outstanding: int = 4096
    per_host_in_flight: int = 8
    per_host_queue: int = 256
    lease_s: float = 60.0
    poll_interval_s: float = 0.5
    claim_batch: int = 200
    busy_defer_s: float = 0.5
    max_defer_s: float = 600.0


@dataclass
class _Lane:
    active: int = 0
    queue: deque[DeliveryClaim] = field(default_factory=deque)
    avg_attempt_s: float = 0.05
    running: dict[str, float] = field(default_factory=dict)  # delivery_id → start (monotonic)

    def observe(self, seconds: float) -> None:
        self.avg_attempt_s = 0.8 * self.avg_attempt_s + 0.2 * seconds

    def attempt_s(self, now: float) -> float:
        """Expected duration of one attempt: the running average, or longer while the oldest
        running attempt has already taken longer (a black hole is known before it times out)."""
        oldest = next(iter(self.running.values()), now)
        return max(self.avg_attempt_s, now - oldest)


def attempt_error(exc: BaseException) -> str:
    """The recorded error of an attempt that raised: its class and the start of its message
    (the request's body and headers, signatures included, are never part of it)."""
    text = str(exc).strip()
    name = type(exc).__name__
    return f"attempt failed: {name}: {text[:200]}" if text else f"attempt failed: {name}"


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


class Notifier:
    def __init__(
        self,
        *,
        store: DeliveryStore,
        sender: Sender,
        secrets_for: SecretsFor,
        publisher: EventPublisher,
        policy: RetryPolicy,
        guard: GuardPolicy,
        limits: Limits,
        user_agent: str,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sender = sender
        self.secrets_for = secrets_for
        self.publisher = publisher
        self.policy = policy
        self.guard = guard
        self.limits = limits
        self.user_agent = user_agent
        self.clock = clock
        self.rand = rand
        self._lanes: dict[str, _Lane] = {}
        self._outstanding = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._scheduler: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._held: dict[str, DeliveryClaim] = {}

    # --- intake ---------------------------------------------------------------------------
    async def accept(self, event: OrderEvent) -> str:
        """Schedule the webhook for an order event; 'skipped' | 'duplicate' | 'scheduled'."""
        if not wants_webhook(event):
            metrics.ACCEPTED.labels("skipped").inc()
            return "skipped"
        order = event.order
        assert order.webhook_url is not None
        now = self.clock()
        delivery = NewDelivery(
            delivery_id=delivery_id_for(event),
            merchant_id=order.merchant_id,
            order_id=order.order_id,
            order_event=event.event_name,
            url=order.webhook_url,
            body=encode_body(webhook_payload(event)).decode(),
            created_at=now,
        )
        full_lane_delay = self._full_lane_delay(order.webhook_url)
        leased = self.capacity > 0 and full_lane_delay is None
        claim = await self.store.enqueue(
            delivery,
            lease_until=now + self.limits.lease_s if leased else None,
            due_at=now + full_lane_delay if full_lane_delay is not None else None,
        )
        if claim is None:
            metrics.ACCEPTED.labels("duplicate").inc()
            log.info(
                "webhook already scheduled",
                order_id=order.order_id,
                delivery_id=delivery.delivery_id,
            )
            return "duplicate"
        metrics.ACCEPTED.labels("scheduled").inc()
        if leased:
            self.submit(claim)
        elif full_lane_delay is not None:
            metrics.DEFERRED.inc()  # scheduled for when its endpoint's lane has drained
        else:
            self._wake.set()
        return "scheduled"

    # --- lanes ----------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.limits.max_outstanding - self._outstanding

    @property
    def in_flight(self) -> int:
        return sum(lane.active for lane in self._lanes.values())

    def _lane_key(self, url: str) -> str:
        try:
            return check_url(url, self.guard).lane
        except DestinationRefused:
            return "refused"

    def submit(self, claim: DeliveryClaim) -> None:
        key = self._lane_key(claim.url)
        lane = self._lanes.setdefault(key, _Lane())
        if lane.active < self.limits.per_host_in_flight:
            lane.active += 1
            self._outstanding += 1
            self._held[claim.delivery_id] = claim
            self._spawn(self._run_lane(key, lane, claim))
        elif len(lane.queue) < self.limits.per_host_queue:
            lane.queue.append(claim)
            self._outstanding += 1
            self._held[claim.delivery_id] = claim
            metrics.QUEUED.inc()
        else:
            metrics.DEFERRED.inc()
            self._spawn(self._defer(claim, self._drain_delay(lane)))

    def _drain_delay(self, lane: _Lane) -> float:
        """How long a claim refused by a full lane should wait before it is due again."""
        per_attempt = lane.attempt_s(time.monotonic())
        drain_s = len(lane.queue) / self.limits.per_host_in_flight * per_attempt
        return min(max(self.limits.busy_defer_s, drain_s), self.limits.max_defer_s)

    def _full_lane_delay(self, url: str) -> float | None:
        """For a new delivery whose lane is already full: its drain delay (so it is recorded
        due then, instead of leased now and handed back at once); None if the lane has room."""
        lane = self._lanes.get(self._lane_key(url))
        if lane is None or lane.active < self.limits.per_host_in_flight:
            return None
        if len(lane.queue) < self.limits.per_host_queue:
            return None
        return self._drain_delay(lane)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _defer(self, claim: DeliveryClaim, delay_s: float) -> None:
        try:
            await self.store.defer(claim, self.clock() + delay_s)
        except Exception:
            log.exception("could not defer delivery", delivery_id=claim.delivery_id)

    async def _run_lane(self, key: str, lane: _Lane, claim: DeliveryClaim | None) -> None:
        try:
            while claim is not None:
                started = time.monotonic()
                lane.running[claim.delivery_id] = started
                try:
                    await self.attempt(claim)
                except Exception:
                    # Only bookkeeping fails here (Redis down while recording): the attempt
                    # itself is always recorded, so it is tried again once the lease ends.
                    log.exception(
                        "delivery attempt not recorded; retried when its lease ends",
                        order_id=claim.order_id,
                        delivery_id=claim.delivery_id,
                    )
                finally:
                    self._outstanding -= 1
                    self._held.pop(claim.delivery_id, None)
                    lane.running.pop(claim.delivery_id, None)
                    lane.observe(time.monotonic() - started)
                claim = lane.queue.popleft() if lane.queue else None
                if claim is not None:
                    metrics.QUEUED.dec()
        finally:
            lane.active -= 1
            if lane.active == 0 and not lane.queue and self._lanes.get(key) is lane:
                del self._lanes[key]
            self._wake.set()

    # --- one attempt ----------------------------------------------------------------------
    async def attempt(self, claim: DeliveryClaim) -> AttemptDecision:
        bound = log.bind(
            order_id=claim.order_id, delivery_id=claim.delivery_id, attempt=claim.attempt
        )
        started = self.clock()
        try:
            result = await self._send(claim, started)
        except Exception as exc:
            # A bug, or an error class the sender does not map (a TLS failure, ...): still a
            # failed attempt, counted and retried on the schedule, so it ends `exhausted`.
            result = AttemptResult(error=attempt_error(exc), duration_s=self.clock() - started)
            bound.warning("webhook attempt raised", error=result.error, exc_info=True)
        decision = decide(self.policy, claim.attempt, result, self.rand())
        finished = self.clock()
        next_due = finished + decision.delay_s if decision.delay_s is not None else None
        recorded = await self.store.finish_attempt(
            claim,
            decision.verdict,
            at=finished,
            next_due=next_due,
            status_code=result.status_code,
            error=decision.error,
            duration_s=result.duration_s,
        )
        if not recorded:
            bound.warning("lease lost before the attempt was recorded; another replica owns it")
            return decision
        outcome = "failed" if decision.verdict == "retry" else decision.verdict
        metrics.ATTEMPTS.labels(outcome, metrics.status_class(result.status_code)).inc()
        if result.status_code is not None or result.timed_out:
            metrics.ATTEMPT_SECONDS.observe(result.duration_s)
        await self.publisher.publish(self._event(claim, decision, result, next_due))
        bound.info(
            "webhook attempt",
            outcome=outcome,
            status_code=result.status_code,
            error=decision.error,
            duration_ms=round(result.duration_s * 1000, 1),
            next_attempt_at=_dt(next_due).isoformat() if next_due else None,
        )
        return decision

    async def _send(self, claim: DeliveryClaim, now: float) -> AttemptResult:
        try:
            check_url(claim.url, self.guard)
        except DestinationRefused as exc:
            return AttemptResult(error=str(exc), refused=True)
        secrets = await self.secrets_for(claim.merchant_id, _dt(now))
        if not secrets:
            return AttemptResult(error="the merchant has no webhook signing secret")
        body = claim.body.encode()
        headers = webhook_headers(
            msg_id=claim.delivery_id,
            timestamp=int(now),
            body=body,
            secrets=secrets,
            user_agent=self.user_agent,
        )
        metrics.IN_FLIGHT.inc()
        try:
            return await self.sender.send(claim.url, body, headers)
        finally:
            metrics.IN_FLIGHT.dec()

    @staticmethod
    def _event(
        claim: DeliveryClaim,
        decision: AttemptDecision,
        result: AttemptResult,
        next_due: float | None,
    ) -> Event:
        common: dict[str, Any] = dict(
            delivery_id=claim.delivery_id,
            merchant_id=claim.merchant_id,
            order_id=claim.order_id,
            order_event=claim.order_event,
            url=claim.url,
            attempt=claim.attempt,
            status_code=result.status_code,
        )
        if decision.verdict == "delivered":
            return WebhookDelivered(**common)
        if decision.verdict == "retry":
            return WebhookFailed(
                **common,
                error=decision.error or "failed",
                next_attempt_at=_dt(next_due) if next_due is not None else None,
            )
        return WebhookExhausted(**common, error=decision.error or "exhausted")

    # --- scheduler ------------------------------------------------------------------------
    async def run_scheduler(self) -> None:
        """Claim due deliveries (retries, deferrals, other replicas' expired leases)."""
        while not self._stopping:
            want = min(self.capacity, self.limits.claim_batch)
            claims: list[DeliveryClaim] = []
            if want > 0:
                now = self.clock()
                try:
                    claims = await self.store.claim_due(now, want, now + self.limits.lease_s)
                except Exception:
                    log.exception("claiming due deliveries failed")
                for claim in claims:
                    self.submit(claim)
            if want > 0 and len(claims) == want:
                continue
            self._wake.clear()
            await wait_event(self._wake, self.limits.poll_interval_s)

    async def run_renewer(self) -> None:
        while not self._stopping:
            await wait_event(self._stopped, self.limits.lease_s / 3)
            await self.observe_backlog()
            held = list(self._held.values())
            if not held:
                continue
            try:
                await self.store.renew(held, self.clock() + self.limits.lease_s)
            except Exception:
                log.exception("renewing delivery leases failed")

    async def observe_backlog(self) -> None:
        """Refresh the schedule's gauges (every replica reports the same shared schedule)."""
        try:
            scheduled, earliest = await self.store.backlog()
        except Exception:
            log.warning("reading the delivery backlog failed", exc_info=True)
            return
        metrics.observe_backlog(scheduled, earliest, self.clock())

    def start(self) -> None:
        self._stopping = False
        self._stopped.clear()
        if self._scheduler is None:
            self._scheduler = asyncio.ensure_future(self.run_scheduler())
            self._renewer = asyncio.ensure_future(self.run_renewer())

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; let running attempts finish for `grace_s`, then cancel the rest
        (their leases expire and another replica, or this one after restart, retries)."""
        # The loops end at their next check of `_stopping` (woken at once); cancelling is only
        # the fallback, and never waited on without a bound.
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        for loop in (self._scheduler, self._renewer):
            if loop is None:
                continue
            _, running = await asyncio.wait({loop}, timeout=2.0)
            if running:
                await cancel_and_wait(loop, retry_s=1.0)
        self._scheduler = self._renewer = None
        for lane in self._lanes.values():
            metrics.QUEUED.dec(len(lane.queue))
            lane.queue.clear()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
