"""Poison input on the credit subject is recorded as a dead letter before it is let go of."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from autopay_contracts import CreditReceived, CreditUnmatched, DeadLetter, provision_streams
from autopay_contracts.streams import CREDITS, DEADLETTERS
from autopay_matcher.bootstrap import build_app
from autopay_matcher.settings import MatcherSettings
from autopay_testing import builders
from autopay_testing.jetstream import stored
from autopay_testing.waiting import eventually_async


@pytest.fixture
async def app(nats_url, redis_url, namespace, redis_prefix, streams, redis_client) -> AsyncIterator:
    settings = MatcherSettings(
        nats_url=nats_url,
        redis_url=redis_url,
        namespace=namespace.root,
        redis_prefix=redis_prefix,
        retry_delay_seconds=0.05,
        retry_max_delay_seconds=0.2,
    )
    app = build_app(settings, clock=lambda: builders.T0 + timedelta(minutes=1))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def publish_raw(nats_client, namespace, data: bytes, headers: dict | None = None) -> int:
    subject = namespace.credit(builders.MBX, "received")
    ack = await nats_client.jetstream().publish(
        subject, data, headers=headers, stream=CREDITS.name(namespace)
    )
    return ack.seq


async def consumer_idle(nats_client, namespace) -> bool:
    info = await nats_client.jetstream().consumer_info(CREDITS.name(namespace), "matcher")
    return info.num_pending == 0 and info.num_ack_pending == 0


def dead_letters_total(kind: str) -> float:
    return REGISTRY.get_sample_value("autopay_matcher_dead_letters_total", {"kind": kind}) or 0


async def test_poison_messages_become_dead_letters_and_are_not_redelivered(
    app, nats_client, namespace
):
    """Fault: bytes on the credit subject that are not a `credit.received` (not JSON; another
    event type). Each is stored as a dead letter (bytes, headers, source), then terminated: it
    is not redelivered, and the credits around it are decided as usual."""
    undecodable_before = dead_letters_total("undecodable")
    unexpected_before = dead_letters_total("unexpected_type")
    garbage = b"\x00not json at all\xff"
    garbage_seq = await publish_raw(nats_client, namespace, garbage, {"trace": "abc"})
    wrong = CreditUnmatched(credit=builders.credit("c0"), reason="x").to_bytes()
    wrong_seq = await publish_raw(nats_client, namespace, wrong)
    good = CreditReceived(credit=builders.credit("c1"))
    await nats_client.jetstream().publish(
        good.subject(namespace), good.to_bytes(), headers=good.headers()
    )

    async def two_dead_letters() -> list[dict]:
        found = await stored(nats_client, DEADLETTERS.name(namespace))
        return found if len(found) == 2 else []

    letters = await eventually_async(two_dead_letters, 10, "two dead letters")
    by_seq = {letter["source_seq"]: letter for letter in letters}
    assert set(by_seq) == {garbage_seq, wrong_seq}
    first = by_seq[garbage_seq]
    assert first["type"] == "deadletter.recorded" and first["service"] == "matcher"
    assert first["source_stream"] == CREDITS.name(namespace)
    assert first["source_subject"] == namespace.credit(builders.MBX, "received")
    assert base64.b64decode(first["data"]) == garbage
    assert first["source_headers"]["trace"] == "abc"
    assert first["reason"].startswith("undecodable")
    assert by_seq[wrong_seq]["reason"].startswith("unexpected_type")
    assert base64.b64decode(by_seq[wrong_seq]["data"]) == wrong

    unmatched = await eventually_async(
        lambda: stored(nats_client, CREDITS.name(namespace), ".unmatched"), 10, "c1 decided"
    )
    assert [u["credit"]["credit_id"] for u in unmatched] == ["c1"]
    await eventually_async(lambda: consumer_idle(nats_client, namespace), 10, "consumer idle")
    info = await nats_client.jetstream().consumer_info(CREDITS.name(namespace), "matcher")
    assert info.num_redelivered == 0
    assert dead_letters_total("undecodable") == undecodable_before + 1
    assert dead_letters_total("unexpected_type") == unexpected_before + 1


async def test_a_dead_letter_that_cannot_be_stored_keeps_the_message(app, nats_client, namespace):
    """Fault: the DEADLETTERS stream is missing (no PubAck for the dead letter). The poison
    message is nacked, not terminated, and comes back until its dead letter is stored."""
    js = nats_client.jetstream()
    await js.delete_stream(DEADLETTERS.name(namespace))
    seq = await publish_raw(nats_client, namespace, b"{broken")

    async def held_and_retried() -> bool:
        info = await js.consumer_info(CREDITS.name(namespace), "matcher")
        return info.num_ack_pending == 1 and info.num_redelivered == 1

    await eventually_async(held_and_retried, 10, "the poison message held and retried")
    await provision_streams(js, namespace)
    letters = await eventually_async(
        lambda: stored(nats_client, DEADLETTERS.name(namespace)), 10, "the dead letter stored"
    )
    assert [letter["source_seq"] for letter in letters] == [seq]
    await eventually_async(lambda: consumer_idle(nats_client, namespace), 10, "consumer idle")


async def test_a_redelivered_poison_message_is_recorded_once(app, nats_client, namespace):
    """The dead letter's id comes from the original's stream and sequence, so recording the
    same message again (its term lost after the PubAck) is dropped as a duplicate."""
    seq = await publish_raw(nats_client, namespace, b"nope")
    letters = await eventually_async(
        lambda: stored(nats_client, DEADLETTERS.name(namespace)), 10, "the dead letter stored"
    )
    repeat = DeadLetter.model_validate(letters[0]).model_copy(
        update={"reason": "recorded again", "recorded_at": builders.T0}
    )
    assert repeat.source_seq == seq and repeat.event_id == letters[0]["event_id"]
    ack = await nats_client.jetstream().publish(
        repeat.subject(namespace),
        repeat.to_bytes(),
        headers=repeat.headers(),
        stream=DEADLETTERS.name(namespace),
    )
    assert ack.duplicate
    assert len(await stored(nats_client, DEADLETTERS.name(namespace))) == 1
