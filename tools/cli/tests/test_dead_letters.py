"""`autopay admin dead-letters list|replay` against a running matcher: a replayed dead letter
reaches the matcher's consumer again."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from datetime import timedelta

from autopay_contracts import CreditReceived
from autopay_contracts.streams import CREDITS, DEADLETTERS, ORDERS
from autopay_matcher.bootstrap import build_app
from autopay_matcher.settings import MatcherSettings
from autopay_store.keys import Keys
from autopay_store.orders import OrderBook
from autopay_testing import builders
from autopay_testing.jetstream import stored
from autopay_testing.waiting import eventually_async


async def autopay(env: dict[str, str], *args: str) -> str:
    """The CLI as its own process: the matcher under test runs in this one and logs to its
    stdout, which must not mix with the command's output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autopay_cli.main",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out + err).decode()
    return out.decode()


async def test_replay_brings_a_dead_letter_back_to_the_consumer(
    nats_url, redis_url, namespace, redis_prefix, streams, nats_client, redis_client, tmp_path
):
    """Fault: a `credit.received` that fails validation (a card number with a letter). It is
    dead-lettered; replayed as it was, it reaches the consumer again (a second dead letter,
    for the replayed copy); replayed with corrected bytes, it pays its order."""
    env = {"AUTOPAY_NATS_URL": nats_url, "AUTOPAY_NAMESPACE": namespace.root}
    await OrderBook(redis_client, Keys(redis_prefix)).create(builders.order("10001"))
    settings = MatcherSettings(
        nats_url=nats_url, redis_url=redis_url, namespace=namespace.root, redis_prefix=redis_prefix
    )
    matcher = build_app(settings, clock=lambda: builders.T0 + timedelta(minutes=1))
    await matcher.start()
    try:
        good = CreditReceived(credit=builders.credit("c1"))
        broken = good.to_bytes().replace(b'"card_last4":"6412"', b'"card_last4":"64l2"')
        subject = good.subject(namespace)
        ack = await nats_client.jetstream().publish(subject, broken, headers=good.headers())

        async def dead_letters(count: int):
            found = await stored(nats_client, DEADLETTERS.name(namespace))
            return found if len(found) == count else None

        await eventually_async(lambda: dead_letters(1), 10, "the dead letter")
        listed = [json.loads(line) for line in (await autopay(env, *LIST)).splitlines()]
        assert [(d["seq"], d["source_seq"]) for d in listed] == [(1, ack.seq)]
        assert base64.b64decode(listed[0]["data"]) == broken
        assert listed[0]["source_subject"] == subject
        assert "64l2" in await autopay(env, "admin", "dead-letters", "list")

        replayed = json.loads(await autopay(env, *REPLAY, "--seq", "1"))
        assert replayed["stream"] == CREDITS.name(namespace) and replayed["seq"] > ack.seq
        second = (await eventually_async(lambda: dead_letters(2), 10, "replay dead-lettered"))[1]
        assert second["source_seq"] == replayed["seq"]
        assert second["source_headers"]["autopay-replay-of"] == "1"

        fixed = tmp_path / "fixed.json"
        fixed.write_bytes(good.to_bytes())
        await autopay(env, *REPLAY, "--seq", "1", "--data-file", str(fixed))
        paid = await eventually_async(
            lambda: stored(nats_client, ORDERS.name(namespace), ".paid"), 10, "the order paid"
        )
        assert [(p["order"]["order_id"], p["credit_id"]) for p in paid] == [("10001", "c1")]
    finally:
        await matcher.stop()


LIST = ("admin", "dead-letters", "list", "--json")
REPLAY = ("admin", "dead-letters", "replay")
