"""Every script call checks that its KEYS are in one Redis Cluster slot (issue #10).

A script whose keys span slots runs on a single Redis and fails in a Cluster (CROSSSLOT), so the
check runs on every call, before anything is sent, on one Redis as on a Cluster. The scripts
that would span slots are `scripts.MULTI_SLOT`, each with why: none today.
"""

from __future__ import annotations

import pytest

from autopay_store import scripts
from autopay_store.keys import Keys
from autopay_store.mailbox_state import Cursor, IngestStore


def test_slots_follow_hash_tags():
    keys = Keys("ap")
    order = keys.order("m1", "6412", "10001")
    holds = keys.card("m1", "6412", "holds")
    assert scripts.slot(order) == scripts.slot(holds) == scripts.slot("{c:m1:6412}")
    assert scripts.slot(b"ap:merchant:7") == scripts.slot(keys.subscription_orders("7"))
    assert scripts.slot("ap:a") != scripts.slot("ap:b")


def test_one_slot_passes_and_several_are_refused_with_the_keys_named():
    scripts.check_one_slot("x", [])
    scripts.check_one_slot("x", ["ap:alone"])
    scripts.check_one_slot("x", ["ap:{t}:a", "ap:{t}:b", b"ap:{t}:c"])
    with pytest.raises(scripts.CrossSlotKeys) as refused:
        scripts.check_one_slot("order_match", ["ap:{t}:a", "ap:a"])
    message = str(refused.value)
    assert "'order_match'" in message and "'ap:a'" in message and "MULTI_SLOT" in message


async def test_a_call_across_slots_sends_nothing(redis_client, redis_prefix):
    claim = scripts.register(redis_client, "idempotency_claim")
    first, second = f"{redis_prefix}:a", f"{redis_prefix}:b"
    with pytest.raises(scripts.CrossSlotKeys):
        await claim(keys=[first, second], args=["pending", 60])
    async with redis_client.pipeline(transaction=False) as pipe:
        with pytest.raises(scripts.CrossSlotKeys):
            await claim(keys=[first, second], args=["pending", 60], client=pipe)
        with pytest.raises(scripts.CrossSlotKeys):
            claim.queue(pipe, [first, second], ["pending", 60])
        assert len(pipe) == 0
    assert await redis_client.exists(first, second) == 0
    assert await claim(keys=[first], args=["pending", 60]) is None  # one key: runs
    assert await redis_client.get(first) == "pending"


def test_no_script_spans_slots():
    assert scripts.MULTI_SLOT == {}


async def test_cursor_save_checks_the_lease_in_the_cursors_slot(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    assert scripts.slot(keys.mailbox_cursor("m1")) == scripts.slot(keys.mailbox_lease("m1"))
    assert scripts.slot(keys.mailbox_cursor("m2")) == scripts.slot(keys.mailbox_lease("m2"))
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=60)
    assert store._save_cursor.single_slot is True
    assert await store.save_cursor("m1", Cursor(7, 10))
    assert await store.cursor("m1") == Cursor(7, 10)
    await redis_client.set(keys.mailbox_lease("m1"), "replica-a")
    lease = (keys.mailbox_lease("m1"), "replica-b")
    assert not await store.save_cursor("m1", Cursor(7, 12), lease)  # fenced: not its lease
    assert await store.cursor("m1") == Cursor(7, 10)


def test_every_other_script_is_checked(redis_client):
    for name in scripts.names():
        script = scripts.register(redis_client, name)
        assert script.single_slot is (name not in scripts.MULTI_SLOT)
        assert script.name == name and len(script.sha) == 40
