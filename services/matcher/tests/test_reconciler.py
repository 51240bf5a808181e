"""The reconciler decides credits that are in the CREDITS stream without a decision event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import REGISTRY

from autopay_contracts import CreditReceived, CreditUnmatched
from autopay_contracts.streams import CREDITS, ORDERS
from autopay_matcher.bootstrap import build_app
from autopay_matcher.reconciler import Reconciler
from autopay_matcher.settings import MatcherSettings
from autopay_store.keys import Keys
from autopay_store.orders import OrderBook
from autopay_store.reconcile import ReconcileState
from autopay_testing import builders
from autopay_testing.jetstream import publish_event, stored
from autopay_testing.waiting import eventually_async


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


@pytest.fixture
def settings(nats_url, redis_url, namespace, redis_prefix) -> MatcherSettings:
    return MatcherSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        reconcile_interval_seconds=0.3,
        reconcile_min_age_seconds=0.0,
    )


@pytest.fixture
def book(redis_client, redis_prefix) -> OrderBook:
    return OrderBook(redis_client, Keys(redis_prefix))


@pytest.fixture
async def started(settings) -> AsyncIterator:
    apps = []

    async def start(**changes):
        app = build_app(
            settings.model_copy(update=changes), clock=lambda: builders.T0 + timedelta(minutes=1)
        )
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


async def durable_created_after_the_credits(nats_client, namespace) -> None:
    """The situation of a durable consumer (re)created with `deliver new` after credits were
    stored: the consumer will never be given them."""
    await nats_client.jetstream().add_consumer(
        CREDITS.name(namespace),
        ConsumerConfig(
            name="matcher",
            durable_name="matcher",
            deliver_policy=DeliverPolicy.NEW,
            filter_subject=namespace.credit("*", "received"),
        ),
    )


async def test_a_credit_the_consumer_never_got_is_decided_and_decided_ones_are_left_alone(
    started, book, streams, nats_client, namespace, redis_client, redis_prefix
):
    """Fault: a credit stored while no consumer would ever deliver it (the durable was created
    afterwards with `deliver new`). The reconciler pays its order through the matcher. A credit
    that already has a decision event in the stream is not decided again, even though Redis
    does not know it (its order stays waiting). The watermark moves to the stream's end."""
    await book.create(builders.order("10001"))
    await book.create(builders.order("10002", amount=7_000_000))
    decided = builders.credit("c2", amount=7_000_000)
    await publish_event(nats_client, namespace, CreditReceived(credit=decided))
    await publish_event(nats_client, namespace, CreditUnmatched(credit=decided, reason="earlier"))
    await publish_event(nats_client, namespace, CreditReceived(credit=builders.credit("c1")))
    await durable_created_after_the_credits(nats_client, namespace)
    reconciled_before = sample("autopay_matcher_reconciler_decided_total")

    await started()

    paid = await eventually_async(
        lambda: stored(nats_client, ORDERS.name(namespace), ".paid"), 10, "the order paid"
    )
    assert [(p["order"]["order_id"], p["credit_id"]) for p in paid] == [("10001", "c1")]
    assert sample("autopay_matcher_reconciler_decided_total") == reconciled_before + 1
    state = ReconcileState(redis_client, Keys(redis_prefix), CREDITS.name(namespace))

    async def watermark_at_the_end() -> bool:
        info = await nats_client.jetstream().stream_info(CREDITS.name(namespace))
        return await state.watermark() == info.state.last_seq

    await eventually_async(watermark_at_the_end, 10, "the watermark at the stream's end")
    assert (await book.get("10002")).status == "waiting"
    unmatched = await stored(nats_client, CREDITS.name(namespace), ".unmatched")
    assert [u["credit"]["credit_id"] for u in unmatched] == ["c2"]
    assert sample("autopay_matcher_oldest_undecided_credit_age_seconds") == 0


async def test_a_young_credit_is_left_to_the_consumer_but_its_age_is_reported(
    started, book, streams, nats_client, namespace
):
    """A credit younger than the minimum age is not decided by the reconciler, even if no
    consumer will deliver it; the pass reports it as the oldest credit without a decision."""
    await book.create(builders.order("10001"))
    await publish_event(nats_client, namespace, CreditReceived(credit=builders.credit("c1")))
    await durable_created_after_the_credits(nats_client, namespace)

    await started(reconcile_min_age_seconds=3600)

    async def reported() -> bool:
        return sample("autopay_matcher_oldest_undecided_credit_age_seconds") > 0

    await eventually_async(reported, 10, "the undecided credit's age reported")
    assert sample("autopay_matcher_reconciler_undecided_credits") == 0
    assert await stored(nats_client, ORDERS.name(namespace), ".paid") == []
    assert (await book.get("10001")).status == "waiting"


class _LeaseHeldElsewhere:
    async def acquire(self, holder: str, ttl_s: float) -> bool:
        return False


async def test_a_pass_is_skipped_while_another_replica_holds_the_lease():
    def no_jetstream():
        raise AssertionError("a skipped pass does not read the stream")

    reconciler = Reconciler(
        no_jetstream,
        matcher=None,  # type: ignore[arg-type]
        state=_LeaseHeldElsewhere(),  # type: ignore[arg-type]
        stream="S",
        subject="s.>",
        durable="matcher",
        interval_s=60,
        min_age_s=180,
        batch=10,
        decision_timeout_s=10,
    )
    report = await reconciler.reconcile()
    assert report.result == "skipped"


async def test_scan_reads_forward_from_the_watermark(streams, nats_client, namespace):
    """Credits at or below the watermark are not read again; a decision stored after its
    credit removes it; the scan ends at the stream's last message."""
    from autopay_matcher.scan import scan_credits

    js = nats_client.jetstream()
    first = builders.credit("c1")
    await publish_event(nats_client, namespace, CreditReceived(credit=first))
    mark = await publish_event(nats_client, namespace, CreditReceived(credit=builders.credit("c2")))
    await publish_event(nats_client, namespace, CreditReceived(credit=builders.credit("c3")))
    await publish_event(nats_client, namespace, CreditUnmatched(credit=first, reason="x"))
    last = await publish_event(nats_client, namespace, CreditReceived(credit=builders.credit("c4")))
    subject = namespace.all_of(CREDITS.aggregate)

    scan = await scan_credits(js, CREDITS.name(namespace), subject, after_seq=mark.seq)
    assert set(scan.undecided) == {"c3", "c4"}
    assert scan.last_seq == last.seq and scan.read == 3
    assert scan.undecided["c3"].seq == mark.seq + 1

    everything = await scan_credits(js, CREDITS.name(namespace), subject, after_seq=0)
    assert set(everything.undecided) == {"c2", "c3", "c4"}
    done = await scan_credits(js, CREDITS.name(namespace), subject, after_seq=last.seq)
    assert done.undecided == {} and done.read == 0 and done.last_seq == last.seq
