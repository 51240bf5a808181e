"""Matcher throughput: credits decided per second by ONE `python -m autopay_matcher` process
with 100 000 waiting orders in Redis (`matcher_credits_per_s`). `measure` can also start
several processes on the same streams and the same durable consumer (scale.py).

Set-up (not measured): nats-server and redis-server of its own, streams provisioned, 100 000
orders created through `OrderBook.create` over 1 000 cards, then N credits published to the
CREDITS stream (most pay a distinct order, a slice matches nothing). Only then is the matcher
started, so the figure is pure consumption: from the first outcome event in the streams to
the moment every outcome is stored and the consumer has nothing pending or unacked.

Verified at the end: every matching credit produced exactly one `order.paid` (for its own
order) and one `credit.matched`, every other credit one `credit.unmatched`, nothing else;
anything else raises.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from autopay_contracts import CreditReceived, Namespace, Order, mailbox_id_for, provision_streams
from autopay_contracts.events import Credit
from autopay_contracts.streams import CREDITS, ORDERS
from autopay_devtools.bench import stop_processes
from autopay_runtime.connections import open_redis
from autopay_store.keys import Keys
from autopay_store.orders import OrderBook
from autopay_testing.servers import free_port, start_nats, start_redis

ORDERS_WAITING = int(os.environ.get("AUTOPAY_BENCH_MATCHER_ORDERS", "100000"))
CREDITS_SENT = int(os.environ.get("AUTOPAY_BENCH_MATCHER_CREDITS", "20000"))
UNMATCHED_SHARE = 0.1
MAILBOXES = 200
CARDS_PER_MAILBOX = 5
LOG_LEVEL = os.environ.get("AUTOPAY_BENCH_MATCHER_LOG_LEVEL", "INFO")
CONSUMER = "matcher"
NS = Namespace("benchmatcher")
PREFIX = "bench-matcher"
DRAIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Plan:
    """One measured run: its namespace and key prefix (fresh streams and keys per run) and
    its sizes."""

    ns: Namespace = NS
    prefix: str = PREFIX
    orders_waiting: int = ORDERS_WAITING
    credits_sent: int = CREDITS_SENT


def _log(message: str) -> None:
    print(f"[bench matcher] {message}", file=sys.stderr, flush=True)


def _cards() -> list[tuple[str, str, str]]:
    cards = []
    for m in range(MAILBOXES):
        gmail = f"bench{m:03d}.kassa@gmail.com"
        for c in range(CARDS_PER_MAILBOX):
            cards.append((mailbox_id_for(gmail), gmail, f"{8600 + c:04d}"))
    return cards


def _orders(now: datetime, count: int) -> list[Order]:
    cards = _cards()
    return [
        Order(
            order_id=str(10001 + i),
            merchant_id=str(1 + i % 50),
            mailbox_id=cards[i % len(cards)][0],
            gmail=cards[i % len(cards)][1],
            card_last4=cards[i % len(cards)][2],
            amount_tiyin=1_000_000 + (i // len(cards)) * 100,
            created_at=now - timedelta(minutes=1),
            expires_at=now + timedelta(minutes=30),
        )
        for i in range(count)
    ]


def _credits(orders: list[Order], now: datetime, count: int) -> tuple[list[Credit], dict[str, str]]:
    """The credits and, for those that pay an order, credit id → order id."""
    rng = random.Random(20261127)
    unmatched = int(count * UNMATCHED_SHARE)
    paying = rng.sample(orders, count - unmatched)
    pays: dict[str, str] = {}
    credits = []
    for i in range(count):
        if i < len(paying):
            order, amount = paying[i], paying[i].amount_tiyin
            pays[f"bench-c{i}"] = order.order_id
        else:
            order = rng.choice(orders)
            amount = order.amount_tiyin + 37  # no order holds a non-round tail
        credits.append(
            Credit(
                credit_id=f"bench-c{i}",
                mailbox_id=order.mailbox_id,
                gmail=order.gmail,
                card_last4=order.card_last4,
                amount_tiyin=amount,
                occurred_at=now.replace(second=0, microsecond=0),
                received_at=now,
                format="uzcard-email",
            )
        )
    rng.shuffle(credits)
    return credits, pays


async def _preload(redis_url: str, prefix: str, orders: list[Order]) -> None:
    redis = open_redis(redis_url, max_connections=64)
    book = OrderBook(redis, Keys(prefix))
    pending = iter(orders)

    async def worker() -> None:
        for order in pending:
            await book.create(order)

    try:
        await asyncio.gather(*(worker() for _ in range(64)))
    finally:
        await redis.aclose()


async def _publish_credits(js, ns: Namespace, credits: list[Credit]) -> None:
    for credit in credits:
        event = CreditReceived(credit=credit)
        await js.publish_async(
            event.subject(ns), event.to_bytes(), headers=event.headers(), stream=CREDITS.name(ns)
        )
    await asyncio.wait_for(js.publish_async_completed(), 60)


async def _messages(js, ns: Namespace) -> tuple[int, int]:
    credits = await js.stream_info(CREDITS.name(ns))
    orders = await js.stream_info(ORDERS.name(ns))
    return credits.state.messages, orders.state.messages


async def _consumer_idle(js, ns: Namespace) -> bool:
    try:
        info = await js.consumer_info(CREDITS.name(ns), CONSUMER)
    except NotFoundError:
        return False
    return info.num_pending == 0 and info.num_ack_pending == 0


async def _measure(js, plan: Plan, processes: list[subprocess.Popen], matching: int) -> float:
    """Seconds from the first outcome event stored to the last one stored and acked."""
    sent = plan.credits_sent
    want_credits, want_orders = 2 * sent, matching
    first = None
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        credits, orders = await _messages(js, plan.ns)
        now = time.perf_counter()
        if first is None and (credits > sent or orders > 0):
            first = now
        if credits >= want_credits and orders >= want_orders and await _consumer_idle(js, plan.ns):
            return now - (first or now)
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"matcher {process.pid} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{credits - sent}/{sent} credits decided")
        await asyncio.sleep(0.01)


async def _read_all(js, stream: str, subject: str) -> list[dict]:
    sub = await js.pull_subscribe(
        subject,
        stream=stream,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
    )
    info = await js.stream_info(stream)
    out: list[dict] = []
    try:
        while len(out) < info.state.messages:
            for msg in await sub.fetch(1000, timeout=5):
                out.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return out


def _check(ok: bool, failure: str) -> None:
    """A failed outcome check fails the benchmark (a raise, not an `assert` that `-O` drops)."""
    if not ok:
        raise RuntimeError(f"matcher outcomes: {failure}")


async def _verify(js, plan: Plan, pays: dict[str, str]) -> Counter:
    outcomes: Counter = Counter()
    paid: dict[str, str] = {}
    matched: dict[str, str] = {}
    unmatched: set[str] = set()
    ns = plan.ns
    for body in await _read_all(js, ORDERS.name(ns), ns.all_of("order")):
        outcomes[body["type"]] += 1
        if body["type"] == "order.paid":
            _check(body["credit_id"] not in paid, f"credit {body['credit_id']} paid twice")
            paid[body["credit_id"]] = body["order"]["order_id"]
    for body in await _read_all(js, CREDITS.name(ns), ns.all_of("credit")):
        outcomes[body["type"]] += 1
        credit_id = body["credit"]["credit_id"]
        if body["type"] == "credit.matched":
            _check(credit_id not in matched, f"credit {credit_id} matched twice")
            matched[credit_id] = body["order_id"]
        elif body["type"] == "credit.unmatched":
            _check(credit_id not in unmatched, f"credit {credit_id} unmatched twice")
            unmatched.add(credit_id)
    _check(paid == pays, "order.paid events differ from the expected credit → order pairs")
    _check(matched == pays, "credit.matched events differ from the expected pairs")
    _check(len(set(paid.values())) == len(paid), "an order was paid twice")
    _check(
        len(unmatched) == plan.credits_sent - len(pays) and not (unmatched & set(pays)),
        f"{len(unmatched)} credits unmatched, {plan.credits_sent - len(pays)} expected",
    )
    _check(
        outcomes["credit.received"] == plan.credits_sent,
        f"{outcomes['credit.received']} credit.received for {plan.credits_sent} sent",
    )
    _check(
        set(outcomes) == {"credit.received", "credit.matched", "credit.unmatched", "order.paid"},
        f"unexpected event types {sorted(outcomes)}",
    )
    return outcomes


def _start_matcher(nats_url: str, redis_url: str, plan: Plan, index: int = 0) -> subprocess.Popen:
    """`python -m autopay_matcher`; a `redis+cluster://` URL makes it a Cluster client. Every
    process binds the same durable (`CONSUMER`); `index` names its cProfile file apart."""
    env = {
        **os.environ,
        "AUTOPAY_NATS_URL": nats_url,
        "AUTOPAY_REDIS_URL": redis_url,
        "AUTOPAY_NAMESPACE": plan.ns.root,
        "AUTOPAY_REDIS_PREFIX": plan.prefix,
        "AUTOPAY_HTTP_PORT": str(free_port()),
        "AUTOPAY_LOG_LEVEL": LOG_LEVEL,
        "AUTOPAY_CONSUMER_NAME": CONSUMER,
    }
    profile = os.environ.get("AUTOPAY_BENCH_MATCHER_PROFILE")  # a cProfile output file
    if profile and index:
        profile = f"{profile}.{index}"
    return subprocess.Popen(
        [
            sys.executable,
            *(["-m", "cProfile", "-o", profile] if profile else []),
            "-m",
            "autopay_matcher",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def measure(
    nats_url: str, redis_url: str, plan: Plan, processes: int = 1
) -> tuple[float, Counter]:
    """One matcher run of `plan` (orders preloaded, credits queued, then `processes` matchers
    started on the same durable): credits decided per second, and the outcomes, each checked
    once every process has stopped."""
    if processes < 1:
        raise ValueError(f"processes must be at least 1, not {processes}")
    now = datetime.now(UTC)
    orders = _orders(now, plan.orders_waiting)
    credits, pays = _credits(orders, now, plan.credits_sent)
    started = time.monotonic()
    await _preload(redis_url, plan.prefix, orders)
    _log(f"{len(orders)} orders created in {time.monotonic() - started:.1f}s")
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await provision_streams(js, plan.ns)
        started = time.monotonic()
        await _publish_credits(js, plan.ns, credits)
        _log(f"{len(credits)} credits published in {time.monotonic() - started:.1f}s")
        started_processes: list[subprocess.Popen] = []
        try:
            for index in range(processes):
                started_processes.append(_start_matcher(nats_url, redis_url, plan, index))
            pids = ", ".join(str(p.pid) for p in started_processes)
            _log(f"matcher started, pid {pids}")
            elapsed = await _measure(js, plan, started_processes, len(pays))
        finally:
            stop_processes(started_processes, 20)
        outcomes = await _verify(js, plan, pays)
    finally:
        await nc.close()
    rate = plan.credits_sent / max(elapsed, 1e-3)  # a tiny plan can be done before a tick
    by = f" by {processes} processes" if processes > 1 else ""
    _log(f"{plan.credits_sent} credits in {elapsed:.2f}s{by}: {rate:.0f}/s")
    return rate, outcomes


async def _bench(nats_url: str, redis_url: str) -> dict[str, float]:
    plan = Plan()
    rate, outcomes = await measure(nats_url, redis_url, plan)
    return {
        "matcher_credits_per_s": round(rate, 1),
        "matcher_credits_matched": outcomes["credit.matched"],
        "matcher_credits_unmatched": outcomes["credit.unmatched"],
        "matcher_orders_waiting": plan.orders_waiting,
    }


def run() -> dict[str, float]:
    nats_server = start_nats()
    redis_server = start_redis()
    try:
        return asyncio.run(_bench(nats_server.url, redis_server.url))
    finally:
        nats_server.stop()
        redis_server.stop()


if __name__ == "__main__":
    print(json.dumps(run()))
