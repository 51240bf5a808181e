"""Credentials everywhere, on the dev stack as it runs (issue #7).

Attacks: any process on the network talking to NATS or Redis without credentials; a service's
Redis user wiping the database or reaching keys outside the stack's prefix; an integrator
reading another merchant's money.
"""

from __future__ import annotations

import asyncio
import json
import random
from urllib.parse import urlsplit

import nats
import pytest
import redis
from nats.errors import NoServersError

from autopay_runtime.settings import nats_connect_options, nats_servers
from autopay_testing.redis_cluster import sync_client
from autopay_testing.waiting import eventually

from .conftest import autopay

pytestmark = pytest.mark.e2e


def _run(stack) -> dict:
    return stack.run_file()


def test_stack_urls_carry_credentials(stack):
    for url in (*nats_servers(stack.info["nats_url"]), stack.info["redis_url"]):
        assert urlsplit(url).password, url


def test_nats_refuses_an_anonymous_client(stack):
    for server in nats_connect_options(stack.info["nats_url"])["servers"]:  # each node

        async def anonymous(server: str = server) -> None:
            await nats.connect(server, allow_reconnect=False, connect_timeout=2)

        with pytest.raises((NoServersError, nats.errors.Error, OSError)):
            asyncio.run(anonymous())


def test_redis_refuses_a_client_without_the_password(stack):
    port = _run(stack)["redis_port"]
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, socket_timeout=5).get("ap:anything")


def test_a_service_redis_user_is_held_to_its_keys_and_commands(stack):
    run = _run(stack)
    password = run["credentials"]["redis"]["gateway"]
    scheme = "redis+cluster" if run.get("redis_cluster", 1) > 1 else "redis"
    client = sync_client(f"{scheme}://gateway:{password}@127.0.0.1:{run['redis_port']}/0")
    prefix = run["env"]["redis_prefix"]
    assert client.set(f"{prefix}:probe", 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.set("elsewhere:probe", 1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.config_get("*")
    client.delete(f"{prefix}:probe")


def _other_merchant(stack) -> tuple[str, dict]:
    """A second merchant, on a mailbox of its own in the demo IMAP server."""
    created = json.loads(
        autopay(
            "admin", "merchant", "create", "--name", "Other", "--json",
            "--state-dir", str(stack.state_dir),
        )
    )  # fmt: skip
    gmail = "othershop@gmail.com"
    autopay(
        "admin", "card", "add", "--merchant", created["merchant_id"], "--card-last4", "1111",
        "--gmail", gmail, "--app-password", stack.info["imap"]["password"],
        "--state-dir", str(stack.state_dir),
    )  # fmt: skip
    return created["api_key"], {"card_last4": "1111", "gmail": "Other.Shop@gmail.com"}


def test_an_integrator_receives_its_merchant_events_and_nothing_of_another(stack, receiver):
    issued = json.loads(
        autopay(
            "admin", "integrator", "create", "--merchant", stack.info["merchant_id"],
            "--state-dir", str(stack.state_dir),
        )
    )  # fmt: skip
    stack.expected_violation = f'"$G/user:{issued["user"]}"'
    other_key, other_card = _other_merchant(stack)
    received: list[tuple[str, dict]] = []
    errors: list[str] = []

    async def scenario() -> None:
        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        client = await nats.connect(
            **nats_connect_options(issued["nats_url"]),
            inbox_prefix=issued["inbox_prefix"],
            error_cb=on_error,
        )

        async def on_msg(msg) -> None:
            received.append((msg.subject, json.loads(msg.data)))

        for subject in issued["subscribe"][:3]:
            await client.subscribe(subject, cb=on_msg)
        await client.flush()

        amount = random.randint(10_000, 900_000)
        own = stack.post(
            "/api/create-payment",
            {"amount": amount, **stack.info["card"], "webhook_url": receiver.url},
        ).json()["order_id"]
        other = stack.http.post(
            "/api/create-payment",
            json={"amount": amount + 1, **other_card},
            headers={"x-api-key": other_key},
        )
        assert other.status_code == 200, other.text
        stack.send_credit(amount)
        autopay(
            "dev", "send-credit", "--state-dir", str(stack.state_dir), "--amount",
            str(amount + 1), "--card-last4", "1111", "--gmail", "othershop@gmail.com",
        )  # fmt: skip

        async def own_paid_and_webhooked() -> bool:
            types = {body.get("type") for _, body in received}
            return {"order.paid", "credit.matched", "webhook.delivered"} <= types

        for _ in range(300):
            if await own_paid_and_webhooked():
                break
            await asyncio.sleep(0.1)

        def other_paid() -> bool:
            response = stack.http.post(
                "/api/check-payment",
                json={"order_id": other.json()["order_id"]},
                headers={"x-api-key": other_key},
            )
            return response.json()["status"] == "paid"

        await asyncio.to_thread(eventually, other_paid, 30, "the other merchant's order paid")
        await asyncio.sleep(1.0)  # its events would have reached the integrator by now
        sneaky = await client.subscribe(f"autopay.v1.order.{other.json()['order_id']}.>")
        await client.flush()
        await asyncio.sleep(0.3)
        await sneaky.unsubscribe()
        await client.close()
        assert own in {body.get("order", {}).get("order_id") for _, body in received}

    asyncio.run(scenario())
    merchant = stack.info["merchant_id"]
    subjects = {subject for subject, _ in received}
    assert subjects, "the integrator received nothing"
    assert all(subject.split(".")[3] == merchant for subject in subjects), subjects
    types = {body["type"] for _, body in received}
    assert {"order.paid", "credit.matched", "webhook.delivered"} <= types, types
    assert any("permissions violation" in error.lower() for error in errors), errors
