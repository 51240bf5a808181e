"""The durable consumer an older matcher left behind is brought to this version's settings."""

from __future__ import annotations

from nats.js.api import ConsumerConfig, DeliverPolicy

from autopay_contracts.streams import CREDITS
from autopay_matcher.bootstrap import build_app
from autopay_matcher.settings import MatcherSettings


def settings(nats_url, redis_url, namespace, redis_prefix) -> MatcherSettings:
    return MatcherSettings(
        nats_url=nats_url, redis_url=redis_url, namespace=namespace.root, redis_prefix=redis_prefix
    )


async def test_an_old_durable_with_a_delivery_limit_is_updated_at_start(
    nats_url, redis_url, namespace, redis_prefix, streams, nats_client, redis_client
):
    """Fault: an upgrade over a durable created with `max_deliver=20` (binding to it as it is
    would keep dropping credits after 20 failures). At start the matcher updates it in place to
    no delivery limit, keeping what cannot be edited (its deliver policy) as it is."""
    js = nats_client.jetstream()
    stream = CREDITS.name(namespace)
    await js.add_consumer(
        stream,
        ConsumerConfig(
            name="matcher",
            durable_name="matcher",
            deliver_policy=DeliverPolicy.NEW,
            ack_wait=5,
            max_deliver=20,
            filter_subject=namespace.credit("*", "received"),
        ),
    )
    app = build_app(settings(nats_url, redis_url, namespace, redis_prefix))
    await app.start()
    try:
        info = await js.consumer_info(stream, "matcher")
        assert info.config.max_deliver == -1
        assert info.config.ack_wait == 30
        assert info.config.deliver_policy == DeliverPolicy.NEW
    finally:
        await app.stop()


async def test_a_new_durable_has_no_delivery_limit(
    nats_url, redis_url, namespace, redis_prefix, streams, nats_client, redis_client
):
    app = build_app(settings(nats_url, redis_url, namespace, redis_prefix))
    await app.start()
    try:
        info = await nats_client.jetstream().consumer_info(CREDITS.name(namespace), "matcher")
        assert info.config.max_deliver == -1
        assert info.config.deliver_policy == DeliverPolicy.ALL
        assert info.config.filter_subject == namespace.credit("*", "received")
    finally:
        await app.stop()
