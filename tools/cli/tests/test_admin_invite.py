"""`autopay admin invite create`: a code the gateway's admin API redeems (real Redis)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from autopay_cli.main import app
from autopay_store.invites import Invites
from autopay_store.keys import Keys

runner = CliRunner()


@pytest.fixture
def redis_env(monkeypatch, redis_url, redis_prefix):
    monkeypatch.setenv("AUTOPAY_REDIS_URL", redis_url)
    monkeypatch.setenv("AUTOPAY_REDIS_PREFIX", redis_prefix)


def test_invite_create_prints_a_redeemable_code(redis_env, redis_url, redis_prefix, redis_client):
    """(`redis_client` removes the test's keys afterwards.)"""
    result = runner.invoke(
        app, ["admin", "invite", "create", "--uses", "2", "--days", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    invite = json.loads(result.output)
    assert set(invite) == {"code", "uses", "expires_at"} and invite["uses"] == 2
    expires = datetime.fromisoformat(invite["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=3))) < timedelta(minutes=1)

    async def redeem_all() -> list[bool]:
        from autopay_runtime.connections import open_redis

        client = open_redis(redis_url)
        try:
            invites = Invites(client, Keys(redis_prefix))
            return [await invites.redeem(invite["code"], datetime.now(UTC)) for _ in range(3)]
        finally:
            await client.aclose()

    assert asyncio.run(redeem_all()) == [True, True, False]


def test_invite_create_refuses_bad_terms(redis_env):
    result = runner.invoke(app, ["admin", "invite", "create", "--uses", "0"])
    assert result.exit_code == 2
