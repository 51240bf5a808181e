"""Invite codes (real Redis): single use, several uses, expiry, racing redemptions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from autopay_store.invites import ALPHABET, CODE_LENGTH, Invites
from autopay_store.keys import Keys

NOW = datetime.now(UTC).replace(microsecond=0)  # Redis expires the records for real


@pytest.fixture
def invites(redis_client, redis_prefix) -> Invites:
    return Invites(redis_client, Keys(redis_prefix))


async def test_a_code_is_short_random_and_used_once(invites):
    invite = await invites.issue(now=NOW)
    assert len(invite.code) == CODE_LENGTH and set(invite.code) <= set(ALPHABET)
    assert (invite.uses, invite.remaining) == (1, 1)
    assert invite.expires_at == NOW + timedelta(days=7)
    assert await invites.get(invite.code) == invite
    assert await invites.redeem(invite.code, NOW) is True
    assert await invites.redeem(invite.code, NOW) is False
    assert await invites.redeem_verdict(invite.code, NOW) == "used"
    assert (await invites.get(invite.code)).remaining == 0
    assert len({(await invites.issue(now=NOW)).code for _ in range(20)}) == 20


async def test_several_uses_and_expiry(invites):
    invite = await invites.issue(uses=2, days=1, now=NOW)
    assert await invites.redeem(invite.code, NOW + timedelta(hours=23))
    assert await invites.redeem_verdict(invite.code, NOW + timedelta(days=1)) == "expired"
    assert (await invites.get(invite.code)).remaining == 1  # an expired code takes nothing


async def test_unknown_and_malformed_codes_are_refused(invites):
    assert await invites.redeem_verdict("nosuchcode", NOW) == "unknown"
    for code in ("", "x" * 65, "a b", "a:*", "ключ"):
        assert await invites.redeem(code, NOW) is False
        assert await invites.get(code) is None


async def test_racing_redemptions_of_the_last_use_win_once(invites):
    invite = await invites.issue(uses=3, now=NOW)
    results = await asyncio.gather(*(invites.redeem(invite.code, NOW) for _ in range(20)))
    assert sum(results) == 3


async def test_release_gives_back_a_taken_use_only(invites):
    invite = await invites.issue(now=NOW)
    assert not await invites.release(invite.code)  # nothing taken yet
    assert await invites.redeem(invite.code, NOW)
    assert await invites.release(invite.code)
    assert await invites.redeem(invite.code, NOW)


async def test_the_record_expires_in_redis_after_the_code(invites, redis_client, redis_prefix):
    invite = await invites.issue(days=2, now=NOW)
    ttl = await redis_client.ttl(Keys(redis_prefix).invite(invite.code))
    assert timedelta(days=2) < timedelta(seconds=ttl) <= timedelta(days=33)


async def test_bad_terms_are_refused(invites):
    with pytest.raises(ValueError):
        await invites.issue(uses=0, now=NOW)
    with pytest.raises(ValueError):
        await invites.issue(days=0, now=NOW)
