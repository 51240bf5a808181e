"""The matcher against real NATS JetStream and Redis, run in-process."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from autopay_contracts import (
    CreditReceived,
    CreditUnmatched,
    Namespace,
    Order,
    mailbox_id_for,
    sandbox_mailbox_id_for,
)
from autopay_contracts.events import Credit
from autopay_contracts.streams import CREDITS, DEADLETTERS, ORDERS
from autopay_matcher.bootstrap import build_app
from autopay_matcher.ledger import LedgerConsumer
from autopay_matcher.settings import MatcherSettings
from autopay_store.keys import Keys
from autopay_store.ledger import Ledger, ledger_scope
from autopay_store.mailboxes import MailboxOwners
from autopay_store.orders import OrderBook
from autopay_testing.jetstream import publish_event, stored

GMAIL = "karta@gmail.com"
MBX = mailbox_id_for(GMAIL)


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(nats_url, redis_url, namespace, redis_prefix) -> MatcherSettings:
    return MatcherSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        expiry_scan_interval_seconds=0.05,
        retry_delay_seconds=0.2,
        retry_max_delay_seconds=1.0,
    )


@pytest.fixture
async def app(settings, clock, streams, redis_client) -> AsyncIterator:
    app = build_app(settings, clock=clock)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
def book(redis_client, redis_prefix) -> OrderBook:
    return OrderBook(redis_client, Keys(redis_prefix))


def make_order(order_id: str, at: datetime, amount: int = 5_003_700) -> Order:
    return Order(
        order_id=order_id,
        merchant_id="7",
        mailbox_id=MBX,
        gmail=GMAIL,
        card_last4="6412",
        amount_tiyin=amount,
        created_at=at,
        expires_at=at + timedelta(minutes=5),
    )


def make_credit(credit_id: str, at: datetime, amount: int = 5_003_700, **kw) -> Credit:
    return Credit(
        credit_id=credit_id,
        mailbox_id=MBX,
        gmail=GMAIL,
        card_last4="6412",
        amount_tiyin=amount,
        occurred_at=at.replace(second=0),
        received_at=at,
        format="uzcard-email",
        **kw,
    )


async def send_credit(nats_client, ns: Namespace, credit: Credit, msg_id: str | None = None):
    await publish_event(nats_client, ns, CreditReceived(credit=credit), msg_id)


async def eventually(probe, timeout: float = 10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_credit_pays_order_and_both_events_are_stored(
    app, book, clock, nats_client, namespace
):
    await book.create(make_order("10001", clock.at))
    clock.at += timedelta(minutes=1)
    await send_credit(nats_client, namespace, make_credit("c1", clock.at))

    paid = await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".paid"))
    assert paid[0]["order"]["order_id"] == "10001"
    assert paid[0]["credit_id"] == "c1" and paid[0]["late"] is False
    matched = await eventually(lambda: stored(nats_client, CREDITS.name(namespace), ".matched"))
    assert matched[0]["order_id"] == "10001" and matched[0]["credit"]["credit_id"] == "c1"
    assert (await book.get("10001")).status == "paid"


async def test_credit_without_order_is_unmatched(app, clock, nats_client, namespace):
    await send_credit(nats_client, namespace, make_credit("c1", clock.at))
    unmatched = await eventually(lambda: stored(nats_client, CREDITS.name(namespace), ".unmatched"))
    assert unmatched[0]["credit"]["credit_id"] == "c1"
    assert unmatched[0]["reason"] == "no order holds this amount on this card"


async def test_foreign_currency_is_unmatched_with_reason(app, book, clock, nats_client, namespace):
    await book.create(make_order("10001", clock.at))
    await send_credit(nats_client, namespace, make_credit("c1", clock.at, currency="USD"))
    unmatched = await eventually(lambda: stored(nats_client, CREDITS.name(namespace), ".unmatched"))
    assert "USD" in unmatched[0]["reason"]
    assert (await book.get("10001")).status == "waiting"


async def test_expiry_scanner_publishes_order_expired(app, book, clock, nats_client, namespace):
    await book.create(make_order("10001", clock.at))
    await asyncio.sleep(0.2)
    assert await stored(nats_client, ORDERS.name(namespace), ".expired") == []
    clock.at += timedelta(minutes=5)
    expired = await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".expired"))
    assert expired[0]["order"]["order_id"] == "10001"
    assert (await book.get("10001")).status == "expired"
    assert await book.due(clock.at + timedelta(hours=1)) == []


async def test_late_credit_after_expiry_pays_with_late_flag(
    app, book, clock, nats_client, namespace
):
    created = clock.at
    await book.create(make_order("10001", created))
    clock.at += timedelta(minutes=5)
    await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".expired"))
    clock.at += timedelta(minutes=2)
    await send_credit(nats_client, namespace, make_credit("c1", created + timedelta(minutes=4)))
    paid = await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".paid"))
    assert paid[0]["late"] is True


async def test_redelivered_credit_does_not_pay_twice(app, book, clock, nats_client, namespace):
    """The same credit published again (new message id, as after a producer crash) is decided
    once: the republished outcome events are dropped by dedup, the stream holds one of each."""
    await book.create(make_order("10001", clock.at))
    credit = make_credit("c1", clock.at)
    await send_credit(nats_client, namespace, credit)
    await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".paid"))
    await send_credit(nats_client, namespace, credit, msg_id="another-delivery")
    received = CREDITS.name(namespace)
    await eventually(lambda: _consumer_idle(nats_client, received))
    assert len(await stored(nats_client, ORDERS.name(namespace), ".paid")) == 1
    assert len(await stored(nats_client, received, ".matched")) == 1
    assert len(await stored(nats_client, received, ".received")) == 2


async def _consumer_idle(nats_client, stream: str) -> bool:
    info = await nats_client.jetstream().consumer_info(stream, "matcher")
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_health_endpoints(app):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://matcher") as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        metrics = (await client.get("/metrics")).text
        assert "autopay_matcher_credits_total" in metrics
        assert "autopay_matcher_match_seconds" in metrics


async def test_crash_after_commit_before_publish_is_repaired_by_redelivery(
    app, book, clock, nats_client, namespace
):
    """Redis decided the credit but the events never left (the process died): the redelivered
    credit is a duplicate and publishes the first outcome's events, once."""
    await book.create(make_order("10001", clock.at))
    credit = make_credit("c1", clock.at)
    first = await book.match_credit(credit, clock.at)
    assert first.kind == "matched"
    await send_credit(nats_client, namespace, credit)
    paid = await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".paid"))
    assert paid[0]["paid_at"] == first.record.paid_at.isoformat().replace("+00:00", "Z")
    await eventually(lambda: _consumer_idle(nats_client, CREDITS.name(namespace)))
    assert len(await stored(nats_client, CREDITS.name(namespace), ".matched")) == 1


async def test_redis_outage_retries_the_credit_instead_of_losing_it(
    settings, clock, streams, nats_client, namespace, redis_prefix, tmp_path
):
    import redis.asyncio as aioredis
    from prometheus_client import REGISTRY

    from autopay_testing.servers import start_redis

    server = start_redis(workdir=tmp_path, persistent=True)
    port = server.port
    settings = settings.model_copy(update={"redis_url": server.url})
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    app = build_app(settings, clock=clock)
    try:
        await OrderBook(client, Keys(redis_prefix)).create(make_order("10001", clock.at))
        await client.aclose()
        await app.start()
        server.stop()
        retries = REGISTRY.get_sample_value("autopay_matcher_retries_total", {"cause": "redis"})
        await send_credit(nats_client, namespace, make_credit("c1", clock.at))

        async def retried() -> bool:
            now = REGISTRY.get_sample_value("autopay_matcher_retries_total", {"cause": "redis"})
            return (now or 0) > (retries or 0)

        await eventually(retried)
        server = start_redis(workdir=tmp_path, port=port, persistent=True)
        paid = await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".paid"))
        assert paid[0]["order"]["order_id"] == "10001"
    finally:
        await app.stop()
        server.stop()


async def test_a_credit_whose_decision_fails_is_retried_while_its_batch_is_paid(
    settings, clock, streams, book, redis_client, redis_prefix, nats_client, namespace
):
    """Three credits land in one fetch; one card's `credits` hash is corrupted (WRONGTYPE), so
    only that credit's Redis call fails: the other two are paid and acked, the failing one is
    nacked and retried, and once the key is repaired it pays its order."""
    from prometheus_client import REGISTRY

    await book.create(make_order("10001", clock.at))
    await book.create(make_order("10002", clock.at, amount=7_000_000))
    await book.create(make_order("10003", clock.at).model_copy(update={"card_last4": "7001"}))
    broken = Keys(redis_prefix).card(MBX, "7001", "credits")
    await redis_client.set(broken, "not a hash")
    await send_credit(nats_client, namespace, make_credit("c1", clock.at))
    await send_credit(
        nats_client,
        namespace,
        make_credit("c2", clock.at).model_copy(update={"card_last4": "7001"}),
    )
    await send_credit(nats_client, namespace, make_credit("c3", clock.at, amount=7_000_000))
    retries = REGISTRY.get_sample_value("autopay_matcher_retries_total", {"cause": "redis"}) or 0
    app = build_app(settings, clock=clock)
    await app.start()
    try:
        paid_orders = lambda: _paid_order_ids(nats_client, namespace)  # noqa: E731

        assert await eventually(lambda: _has(paid_orders, {"10001", "10002"}))

        async def retried_twice() -> bool:
            now = REGISTRY.get_sample_value("autopay_matcher_retries_total", {"cause": "redis"})
            return (now or 0) >= retries + 2

        await eventually(retried_twice)
        info = await nats_client.jetstream().consumer_info(CREDITS.name(namespace), "matcher")
        assert info.num_pending == 0 and info.num_ack_pending == 1  # only c2 is outstanding
        assert await paid_orders() == {"10001", "10002"}
        assert (await book.get("10003")).status == "waiting"

        await redis_client.delete(broken)
        assert await eventually(lambda: _has(paid_orders, {"10001", "10002", "10003"}))
        await eventually(lambda: _consumer_idle(nats_client, CREDITS.name(namespace)))
        assert await paid_orders() == {"10001", "10002", "10003"}
        assert len(await stored(nats_client, CREDITS.name(namespace), ".matched")) == 3
    finally:
        await app.stop()


async def _paid_order_ids(nats_client, namespace) -> set[str]:
    paid = await stored(nats_client, ORDERS.name(namespace), ".paid")
    return {event["order"]["order_id"] for event in paid}


async def _has(probe, expected: set[str]) -> bool:
    return expected <= await probe()


async def test_a_lone_credit_is_decided_without_waiting_for_a_full_batch(
    settings, clock, streams, book, nats_client, namespace
):
    """The consumer asks for up to `fetch_batch` credits with a long fetch timeout; a single
    credit arriving while that fetch waits is handled at once, not when the fetch expires."""
    settings = settings.model_copy(update={"fetch_timeout_seconds": 10.0, "fetch_batch": 256})
    await book.create(make_order("10001", clock.at))
    app = build_app(settings, clock=clock)
    await app.start()
    try:

        async def fetch_waiting() -> bool:
            info = await nats_client.jetstream().consumer_info(CREDITS.name(namespace), "matcher")
            return info.num_waiting > 0

        await eventually(fetch_waiting)
        await send_credit(nats_client, namespace, make_credit("c1", clock.at))
        paid = await eventually(
            lambda: stored(nats_client, ORDERS.name(namespace), ".paid"), timeout=4.0
        )
        assert paid[0]["order"]["order_id"] == "10001"
    finally:
        await app.stop()


async def test_a_credit_whose_event_is_not_stored_is_retried_while_its_batch_is_acked(
    app, book, clock, nats_client, namespace
):
    """With the ORDERS stream gone, a paying credit's `order.paid` gets no PubAck: that credit
    is nacked and retried (its `credit.matched` is stored once, the retries deduplicated), while
    an unmatched credit is acked; once the stream is back the order's payment is stored."""
    from autopay_contracts import provision_streams

    js = nats_client.jetstream()
    await book.create(make_order("10001", clock.at))
    await js.delete_stream(ORDERS.name(namespace))
    await send_credit(nats_client, namespace, make_credit("c1", clock.at))
    await send_credit(nats_client, namespace, make_credit("c2", clock.at, amount=1_234_500))

    async def only_c1_outstanding() -> bool:
        info = await js.consumer_info(CREDITS.name(namespace), "matcher")
        return info.num_pending == 0 and info.num_ack_pending == 1 and info.num_redelivered > 0

    await eventually(only_c1_outstanding)
    unmatched = await stored(nats_client, CREDITS.name(namespace), ".unmatched")
    assert [u["credit"]["credit_id"] for u in unmatched] == ["c2"]

    await provision_streams(js, namespace)
    paid = await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".paid"))
    assert paid[0]["order"]["order_id"] == "10001" and paid[0]["credit_id"] == "c1"
    await eventually(lambda: _consumer_idle(nats_client, CREDITS.name(namespace)))
    assert len(await stored(nats_client, CREDITS.name(namespace), ".matched")) == 1


async def test_credits_never_cross_between_live_and_sandbox(
    app, book, clock, nats_client, namespace
):
    """Attack: a live bank mail for the amount a test order waits for, a sandbox credit for a
    live order's amount, and credits claiming the other world's mailbox. A live order (live
    mailbox id) and a test order (sandbox id) wait for the same amount on the same card; each
    is paid only by its own world's credit, and a credit whose flag and mailbox disagree is a
    dead letter, never a payment."""
    sandbox = sandbox_mailbox_id_for("7", GMAIL)
    live_order = make_order("10001", clock.at)
    test_order = make_order("10002", clock.at).model_copy(
        update={"mailbox_id": sandbox, "test_mode": True}
    )
    await book.create(live_order)
    await book.create(test_order)
    clock.at += timedelta(minutes=1)
    forged = [
        make_credit("c-test-on-live", clock.at, test_mode=True),
        make_credit("c-live-on-sandbox", clock.at).model_copy(update={"mailbox_id": sandbox}),
    ]
    for credit in forged:
        await send_credit(nats_client, namespace, credit)
    letters = await eventually(lambda: _two(stored(nats_client, DEADLETTERS.name(namespace))))
    assert all(letter["reason"].startswith("wrong_world") for letter in letters)
    assert (await book.get("10001")).status == "waiting"
    assert (await book.get("10002")).status == "waiting"

    await send_credit(nats_client, namespace, make_credit("c-live", clock.at))
    paid = await eventually(lambda: stored(nats_client, ORDERS.name(namespace), ".paid"))
    assert [(p["order"]["order_id"], p["credit_id"]) for p in paid] == [("10001", "c-live")]
    assert (await book.get("10002")).status == "waiting"

    sandbox_credit = make_credit("c-sandbox", clock.at, test_mode=True).model_copy(
        update={"mailbox_id": sandbox}
    )
    await send_credit(nats_client, namespace, sandbox_credit)
    paid = await eventually(lambda: _two(stored(nats_client, ORDERS.name(namespace), ".paid")))
    assert paid[1]["order"]["order_id"] == "10002" and paid[1]["credit_id"] == "c-sandbox"
    assert paid[1]["order"]["test_mode"] is True


async def _two(found):
    result = await found
    return result if len(result) >= 2 else []


async def test_credit_decisions_are_published_under_the_merchant(
    app, book, clock, nats_client, namespace, redis_client, redis_prefix
):
    """An integrator's NATS user is limited to its merchant's subjects, so each decision's
    subject carries the merchant: the paid order's, else the mailbox's owner ('unowned' when
    the mailbox has none)."""
    await redis_client.hset(Keys(redis_prefix).mailbox_owner(MBX), "merchant_id", "42")
    await book.create(make_order("10001", clock.at))
    clock.at += timedelta(minutes=1)
    await send_credit(nats_client, namespace, make_credit("c1", clock.at))
    await send_credit(nats_client, namespace, make_credit("c2", clock.at, amount=100_00))
    other = make_credit("c3", clock.at).model_copy(
        update={"mailbox_id": mailbox_id_for("nobody@gmail.com"), "gmail": "nobody@gmail.com"}
    )
    await send_credit(nats_client, namespace, other)

    async def decisions() -> dict[str, str]:
        js = nats_client.jetstream()
        info = await js.stream_info(CREDITS.name(namespace))
        found = {}
        for seq in range(1, info.state.last_seq + 1):
            msg = await js.get_msg(CREDITS.name(namespace), seq)
            if not msg.subject.endswith(".received"):
                found[json.loads(msg.data)["credit"]["credit_id"]] = msg.subject
        return found if len(found) == 3 else {}

    subjects = await eventually(decisions)
    assert subjects == {
        "c1": namespace.credit("7", "matched"),  # the order's merchant
        "c2": namespace.credit("42", "unmatched"),  # the mailbox's owner
        "c3": namespace.credit("unowned", "unmatched"),
    }


async def test_every_decision_lands_in_the_ledger_and_every_credit_event_is_acked(
    app, book, clock, nats_client, namespace, redis_client, redis_prefix
):
    """The ledger consumer (nats-py, batch by batch) records the paid and the unmatched credit
    in the merchant's ledger, and leaves nothing unacked on its durable: the `credit.received`
    messages it skips undecoded are acked as well."""
    await redis_client.hset(Keys(redis_prefix).mailbox_owner(MBX), "merchant_id", "7")
    await book.create(make_order("10001", clock.at))
    clock.at += timedelta(minutes=1)
    await send_credit(nats_client, namespace, make_credit("c1", clock.at))
    await send_credit(nats_client, namespace, make_credit("c2", clock.at, amount=100_00))
    ledger = Ledger(redis_client, Keys(redis_prefix))

    async def recorded():
        found = [await ledger.get(ledger_scope("7", False), c) for c in ("c1", "c2")]
        return found if all(found) else None

    paid, unmatched = await eventually(recorded)
    assert (paid.status, paid.order_id, unmatched.status) == ("matched", "10001", "unmatched")

    async def all_acked() -> bool:
        info = await nats_client.jetstream().consumer_info(CREDITS.name(namespace), "ledger")
        return (
            info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq >= 4
        )

    assert await eventually(all_acked)


async def test_a_failed_ledger_write_is_retried_and_an_unreadable_event_skipped(
    nats_client, namespace, streams, redis_client, redis_prefix, clock
):
    """Fault: Redis refuses the first write (the message is nacked and comes back, then
    recorded); a message on a decision subject that is no event is acked and skipped."""
    keys = Keys(redis_prefix)
    ledger = Ledger(redis_client, keys)
    real_record, failures = ledger.record, []

    async def flaky_record(tx):
        if not failures:
            failures.append(tx.id)
            raise ConnectionError("redis went away")
        return await real_record(tx)

    ledger.record = flaky_record  # type: ignore[method-assign]
    consumer = LedgerConsumer(
        nats_client.jetstream,
        ledger,
        MailboxOwners(redis_client, keys),
        namespace,
        stream=CREDITS.name(namespace),
        subject=namespace.all_of(CREDITS.aggregate),
        durable="ledger-test",
    )
    js = nats_client.jetstream()
    await js.publish(namespace.credit("7", "matched"), b"not an event")
    decided = CreditUnmatched(
        credit=make_credit("c9", clock.at), merchant_id="7", reason="no_order"
    )
    await publish_event(nats_client, namespace, decided)
    await consumer.start()
    try:
        found = await eventually(lambda: ledger.get(ledger_scope("7", False), "c9"), 15)
        assert found.status == "unmatched" and failures == ["c9"]
    finally:
        await consumer.stop()
