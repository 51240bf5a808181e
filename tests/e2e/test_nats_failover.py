"""A payment goes through while the NATS node that leads JetStream is SIGKILLed.

The module's stack always runs on a 3-node cluster (`autopay dev up --nats-cluster 3`), with
or without `AUTOPAY_E2E_NATS_CLUSTER`. Before the kill, one node leads the meta layer and every
stream, so its loss makes every stream elect a new leader while the payment is in flight. The
dev supervisor then starts the node again on its store dir, and it catches up.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal

import httpx
import nats
import pytest
from standardwebhooks.webhooks import Webhook

from autopay_testing.nats_cluster import move_stream_leader
from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack_nats_cluster() -> int:
    return 3


def _meta_leader(stack) -> str | None:
    """The meta leader's server name, as the first node that answers `/jsz` sees it."""
    for ports in stack.run_file()["nats_node_ports"]:
        try:
            jsz = httpx.get(f"http://127.0.0.1:{ports['http_port']}/jsz", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            continue
        if leader := jsz.get("meta_cluster", {}).get("leader"):
            return leader
    return None


def _streams(stack) -> dict[str, dict]:
    """Each stream's leader, peers and whether every follower is current."""

    async def read() -> dict[str, dict]:
        client = await nats.connect(**stack.nats_connect_options(), connect_timeout=2)
        try:
            found = {}
            for info in await client.jetstream().streams_info():
                replicas = info.cluster.replicas or []
                found[info.config.name] = {
                    "leader": info.cluster.leader,
                    "peers": {info.cluster.leader, *(r.name for r in replicas)},
                    "current": all(r.current and not r.offline for r in replicas),
                    "replicas": info.config.num_replicas,
                }
            return found
        finally:
            await client.close()

    return asyncio.run(read())


def _lead_everything_from(stack, server: str) -> None:
    names = list(_streams(stack))

    async def move() -> None:
        client = await nats.connect(**stack.nats_connect_options(), connect_timeout=2)
        try:
            for name in names:
                await move_stream_leader(client, name, server)
        finally:
            await client.close()

    asyncio.run(move())


def _healthy(stack) -> bool:
    nodes = {node["name"] for node in stack.info["nats_nodes"]}
    try:
        streams = _streams(stack)
    except Exception:
        return False
    return bool(streams) and all(
        s["peers"] == nodes and s["current"] and s["leader"] for s in streams.values()
    )


def _create(stack, receiver, amount: int) -> str:
    response = stack.post(
        "/api/create-payment",
        {**stack.info["card"], "amount": amount, "webhook_url": receiver.url},
    )
    assert response.status_code == 200, response.text
    return response.json()["order_id"]


def _paid_with_one_webhook(stack, receiver, order_id: str, amount: int) -> None:
    delivered = eventually(lambda: receiver.for_order(order_id), 90, f"webhook for {order_id}")
    payload = Webhook(stack.info["webhook_secret"]).verify(
        delivered[0]["body"], delivered[0]["headers"]
    )
    assert (payload["order_id"], payload["status"], payload["amount"]) == (order_id, "paid", amount)
    checked = stack.post("/api/check-payment", {"order_id": order_id}).json()
    assert checked["status"] == "paid"
    # A retry after the failover may repeat the request, never with another webhook-id.
    assert len({r["headers"]["webhook-id"] for r in receiver.for_order(order_id)}) == 1


def test_every_stream_and_the_accounts_bucket_are_r3_on_every_node(stack):
    streams = _streams(stack)
    assert "KV_AUTOPAY_ACCOUNTS" in streams
    nodes = {node["name"] for node in stack.info["nats_nodes"]}
    assert len(nodes) == 3
    for name, stream in streams.items():
        assert stream["replicas"] == 3, name
        assert stream["peers"] == nodes, name


def test_killing_the_leader_node_mid_payment_loses_nothing_and_it_comes_back(stack, receiver):
    eventually(lambda: _healthy(stack), 60, "the cluster healthy")
    leader = eventually(lambda: _meta_leader(stack), 30, "a meta leader")
    _lead_everything_from(stack, leader)
    assert {s["leader"] for s in _streams(stack).values()} == {leader}
    node = next(n for n in stack.info["nats_nodes"] if n["name"] == leader)

    amount = 80_000 + random.randint(1, 99)
    order_id = _create(stack, receiver, amount)  # the order is in ORDERS, led by `leader`
    os.kill(node["pid"], signal.SIGKILL)
    stack.send_credit(amount)  # the credit is stored, matched and notified after the election
    _paid_with_one_webhook(stack, receiver, order_id, amount)

    def restarted() -> dict | None:
        stack_json = json.loads((stack.state_dir / "stack.json").read_text())
        again = next(n for n in stack_json["nats_nodes"] if n["name"] == leader)
        return again if again["pid"] != node["pid"] else None

    again = eventually(restarted, 60, f"{leader} restarted by the supervisor")
    assert again["url"] == node["url"]  # the same port: services reconnect to it as before
    eventually(lambda: _healthy(stack), 60, f"{leader} current again in every stream")

    amount = 81_000 + random.randint(1, 99)
    order_id = _create(stack, receiver, amount)
    stack.send_credit(amount)
    _paid_with_one_webhook(stack, receiver, order_id, amount)
