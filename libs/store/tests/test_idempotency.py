"""Idempotency-Key claims bound to the order their call creates (real Redis).

Survives: a gateway killed between writing an order and answering its client. The retry with
the same key, once the dead call's lease is over, gets that order back instead of a second one.
"""

from __future__ import annotations

import pytest

from autopay_store.idempotency import ClaimLost, IdempotencyStore, StoredResponse
from autopay_store.keys import Keys


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(redis_client, redis_prefix, clock) -> IdempotencyStore:
    return IdempotencyStore(
        redis_client, Keys(redis_prefix), ttl_s=600, pending_ttl_s=60, clock=clock
    )


async def test_a_bound_claim_is_taken_over_once_its_lease_is_over(store, clock, redis_client):
    assert (await store.claim("42", "k", "fp")).outcome == "new"
    await store.bind("42", "k", "fp", "10007")
    # the bound claim outlives the short pending TTL: it lasts as long as an answer would
    assert await redis_client.ttl(store._key("42", "k")) > 60
    clock.now += 59
    assert (await store.claim("42", "k", "fp")).outcome == "pending"  # the call may be alive
    clock.now += 1
    taken = await store.claim("42", "k", "fp")
    assert (taken.outcome, taken.order_id) == ("taken_over", "10007")
    # a second retry racing the first sees the claim fresh again, not a second takeover
    assert (await store.claim("42", "k", "fp")).outcome == "pending"
    clock.now += 60
    assert (await store.claim("42", "k", "fp")).outcome == "taken_over"


async def test_another_request_never_takes_a_claim_over(store, clock):
    assert (await store.claim("42", "k", "fp-a")).outcome == "new"
    await store.bind("42", "k", "fp-a", "10007")
    clock.now += 3600
    assert (await store.claim("42", "k", "fp-b")).outcome == "mismatch"
    taken = await store.claim("42", "k", "fp-a")
    assert (taken.outcome, taken.order_id) == ("taken_over", "10007")


async def test_an_unbound_claim_is_never_taken_over(store, clock):
    """Nothing was created yet: the claim is only freed by its TTL, then a retry runs anew."""
    assert (await store.claim("42", "k", "fp")).outcome == "new"
    clock.now += 3600
    assert (await store.claim("42", "k", "fp")).outcome == "pending"


async def test_bind_refuses_a_claim_that_is_not_the_calls(store):
    assert (await store.claim("42", "k", "fp-a")).outcome == "new"
    with pytest.raises(ClaimLost):
        await store.bind("42", "k", "fp-b", "10007")
    await store.complete("42", "k", "fp-a", StoredResponse(200, b"{}"))
    with pytest.raises(ClaimLost):
        await store.bind("42", "k", "fp-a", "10008")
    replay = await store.claim("42", "k", "fp-a")
    assert (replay.outcome, replay.response) == ("replay", StoredResponse(200, b"{}"))


async def test_a_completed_answer_is_replayed_not_taken_over(store, clock):
    assert (await store.claim("42", "k", "fp")).outcome == "new"
    await store.bind("42", "k", "fp", "10007")
    await store.complete("42", "k", "fp", StoredResponse(200, b'{"order_id":"10007"}'))
    clock.now += 3600
    replay = await store.claim("42", "k", "fp")
    assert replay.outcome == "replay" and replay.response.body == b'{"order_id":"10007"}'
