"""The reconciler's watermark only moves up; its lease has one holder at a time."""

from autopay_store.keys import Keys
from autopay_store.reconcile import ReconcileState


async def test_watermark_only_moves_up(redis_client, redis_prefix):
    state = ReconcileState(redis_client, Keys(redis_prefix), "CREDITS")
    assert await state.watermark() == 0
    assert await state.raise_watermark(10) == 10
    assert await state.raise_watermark(4) == 10
    assert await state.watermark() == 10


async def test_lease_has_one_holder_and_only_it_releases(redis_client, redis_prefix):
    state = ReconcileState(redis_client, Keys(redis_prefix), "CREDITS")
    assert await state.acquire("a", 30)
    assert not await state.acquire("b", 30)
    await state.release("b")
    assert not await state.acquire("b", 30)
    await state.release("a")
    assert await state.acquire("b", 30)
