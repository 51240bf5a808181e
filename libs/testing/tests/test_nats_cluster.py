"""A local 3-node NATS JetStream cluster from the harness: streams at R3 survive a node's loss."""

import asyncio
import contextlib
import time

import nats
import pytest
from nats.errors import Error as NatsError

from autopay_contracts import STREAMS, Namespace, provision_streams
from autopay_contracts.streams import ACCOUNTS, ORDERS
from autopay_runtime.settings import nats_connect_options, url_with_credentials
from autopay_testing.nats_cluster import move_stream_leader, start_nats_cluster

USER, PASSWORD = "admin", "s3cret,with/odd:chars@%"
AUTH = f'authorization {{ users = [ {{ user: "{USER}", password: "{PASSWORD}" }} ] }}\n'


@pytest.fixture
def cluster(tmp_path):
    config = tmp_path / "auth.conf"
    config.write_text(AUTH)
    with start_nats_cluster(tmp_path / "nats", 3, log_dir=tmp_path, config_file=config) as c:
        yield c


async def _connect(url: str, **options):
    return await nats.connect(
        **nats_connect_options(url),
        reconnect_time_wait=0.2,
        max_reconnect_attempts=-1,
        connect_timeout=2,
        **options,
    )


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(NatsError, asyncio.TimeoutError, OSError):
            if result := await check():
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout}s: {what}")
        await asyncio.sleep(0.2)


async def test_every_stream_and_the_accounts_bucket_are_r3(cluster, test_id):
    ns = Namespace(test_id)
    client = await _connect(url_with_credentials(cluster.url, USER, PASSWORD))
    try:
        js = client.jetstream()
        names = await provision_streams(js, ns, replicas=3)
        assert ACCOUNTS.stream(ns) in names
        for name in [spec.name(ns) for spec in STREAMS] + [ACCOUNTS.stream(ns)]:
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3, name
            assert info.cluster.leader in {node.name for node in cluster.nodes}, name
            assert len(info.cluster.replicas) == 2, name
    finally:
        await client.close()


async def test_killing_the_meta_and_stream_leader_mid_flow_loses_no_acknowledged_message(
    cluster, test_id
):
    """A publisher (PubAck for each message, one `Nats-Msg-Id` each, retried until acked) and a
    durable consumer run while the node that leads both the meta layer and ORDERS is SIGKILLed.
    Publishing and consuming carry on on the two others; every acknowledged message is
    delivered; the node comes back on its store dir and catches up."""
    ns = Namespace(test_id)
    url = url_with_credentials(cluster.url, USER, PASSWORD)
    client = await _connect(url)
    try:
        js = client.jetstream()
        await provision_streams(js, ns, replicas=3)
        orders, subject = ORDERS.name(ns), ns.order("7", "created")
        consumer = await js.pull_subscribe(subject, "reader", stream=orders)

        leader = cluster.meta_leader()
        assert leader is not None
        await move_stream_leader(client, orders, leader)
        killed = cluster.node(leader)

        acked: list[bytes] = []
        received: set[bytes] = set()
        stop = asyncio.Event()

        async def publish(i: int) -> None:
            data = f"order {i}".encode()
            deadline = time.monotonic() + 60
            while True:  # the same id on every retry: stored once however often it is sent
                try:
                    await js.publish(
                        subject, data, stream=orders, timeout=2, headers={"Nats-Msg-Id": f"m{i}"}
                    )
                    acked.append(data)
                    return
                except (TimeoutError, NatsError) as exc:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"message {i} never acknowledged: {exc!r}") from exc
                    await asyncio.sleep(0.1)

        async def consume() -> None:
            while not stop.is_set():
                try:
                    for msg in await consumer.fetch(10, timeout=1):
                        received.add(msg.data)
                        await msg.ack()
                except (TimeoutError, NatsError):
                    await asyncio.sleep(0.05)

        # nats-py turns a cancellation into its own errors at places, which the loop above
        # takes for a failover: it ends on `stop`, never by being cancelled.
        reader = asyncio.create_task(consume())
        try:
            for i in range(20):
                await publish(i)
            await _until(lambda: _true(len(received) >= 20), 30, "the first 20 consumed")

            cluster.kill(killed.index)  # SIGKILL: no goodbye to the others
            for i in range(20, 60):
                await publish(i)

            info = await js.stream_info(orders)
            assert info.cluster.leader not in {None, leader}
            # The stream's own Raft group elects on its own: it may have carried these
            # publishes before the meta layer has a new leader. That one comes too.
            await _until(
                lambda: _true(cluster.meta_leader() not in {None, leader}), 30, "a new meta leader"
            )
            assert info.state.messages == 60  # each acked once, none twice
            await _until(lambda: _true(received >= set(acked)), 30, "every acked message consumed")
            assert len(acked) == 60
        finally:
            stop.set()
            await asyncio.wait([reader], timeout=10)

        # The same ports and store dir: the node rejoins as the same peer and catches up.
        cluster.restart(killed.index)

        async def rejoined():
            info = await js.stream_info(orders)
            replicas = info.cluster.replicas or []
            names = {info.cluster.leader, *(r.name for r in replicas)}
            return names == {n.name for n in cluster.nodes} and all(r.current for r in replicas)

        await _until(rejoined, 30, f"{leader} current again in {orders}")
    finally:
        await client.close()

    # What it caught up on is on its own disk: ask it alone.
    alone = await _connect(url_with_credentials(killed.url, USER, PASSWORD))
    try:
        info = await alone.jetstream().stream_info(orders)
        assert info.state.messages == 60
    finally:
        await alone.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_new_user_is_taken_by_every_node_on_reload(cluster, tmp_path):
    config = tmp_path / "auth.conf"
    newcomer = '{ user: "newcomer", password: "pw2" }'
    config.write_text(AUTH.replace("} ]", f"}}, {newcomer} ]"))
    cluster.reload()

    async def accepted(node) -> bool:
        client = await nats.connect(
            **nats_connect_options(url_with_credentials(node.url, "newcomer", "pw2")),
            allow_reconnect=False,
            connect_timeout=2,
        )
        await client.close()
        return True

    for node in cluster.nodes:
        await _until(lambda node=node: accepted(node), 15, f"newcomer accepted by {node.name}")
        assert "Failed to reload" not in node.log_file.read_text()


async def test_a_client_fails_over_to_another_node(cluster):
    url = url_with_credentials(cluster.url, USER, PASSWORD)
    client = await _connect(url, dont_randomize=True)
    try:
        assert client.connected_url.port == cluster.nodes[0].ports.port
        cluster.kill(1)
        sub = await client.subscribe("ping")

        async def answered():
            await client.publish("ping", b"1")
            return await sub.next_msg(timeout=1)

        await _until(answered, 15, "a round trip on another node")
        assert client.connected_url.port != cluster.nodes[0].ports.port
        # Only the URLs it was given (with their credentials): nothing discovered.
        assert client.discovered_servers == []
    finally:
        await client.close()
