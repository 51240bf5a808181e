"""The NATS permissions of `autopay_contracts.permissions`, enforced by a real nats-server.

Attack: a compromised Internet-facing gateway (or any pod) publishing
`credit.<mailbox>.received` to get an order paid; an anonymous client; an integrator
subscribing to another merchant's money.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import nats
import pytest
from nats.errors import NoServersError

from autopay_contracts import (
    CreditMatched,
    CreditReceived,
    Namespace,
    OrderCreated,
    OrderPaid,
    provision_streams,
)
from autopay_contracts.permissions import (
    ADMIN_USER,
    SERVICES,
    NatsUser,
    every_service_user,
    inbox_prefix,
    integrator_permissions,
    integrator_user,
    nats_authorization,
)
from autopay_contracts.streams import CREDITS
from autopay_testing import builders
from autopay_testing.servers import start_nats

NS = Namespace("autopay")
PASSWORDS = {name: f"pw-{name}" for name in (ADMIN_USER, *SERVICES)}


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[str]:
    """A nats-server that knows only the service users, the admin and two integrators."""
    path = tmp_path_factory.mktemp("nats-auth")
    users = every_service_user(NS, PASSWORDS)
    for merchant in ("7", "8"):
        name = integrator_user(merchant)
        users.append(NatsUser(name, f"pw-{name}", integrator_permissions(NS, merchant)))
    (path / "auth.conf").write_text(nats_authorization(users))
    with start_nats(path / "data", config_file=path / "auth.conf") as server:
        yield f"127.0.0.1:{server.port}"


async def connect(address: str, user: str, errors: list | None = None):
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(
        f"nats://{user}:pw-{user}@{address}",
        inbox_prefix=inbox_prefix(user),
        error_cb=on_error,
        allow_reconnect=False,
    )


@pytest.fixture
async def provisioned(secured) -> str:
    admin = await connect(secured, ADMIN_USER)
    await provision_streams(admin.jetstream(), NS)
    await admin.drain()
    return secured


async def test_an_anonymous_client_is_refused(secured):
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(f"nats://{secured}", allow_reconnect=False, connect_timeout=2)
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(
            f"nats://gateway:wrong@{secured}", allow_reconnect=False, connect_timeout=2
        )


async def test_the_gateway_cannot_publish_a_credit(provisioned):
    errors: list[str] = []
    gateway = await connect(provisioned, "gateway", errors)
    js = gateway.jetstream()
    order = OrderCreated(order=builders.order("10001"))
    ack = await js.publish(order.subject(NS), order.to_bytes(), headers=order.headers())
    assert ack.stream == NS.stream_name("ORDERS")  # its own event is stored

    credit = CreditReceived(credit=builders.credit("forged"))
    with pytest.raises(Exception):  # noqa: B017 - the server refuses; no PubAck ever comes
        await js.publish(credit.subject(NS), credit.to_bytes(), timeout=1)
    await asyncio.sleep(0.2)
    assert any("permissions violation" in e.lower() for e in errors), errors
    await gateway.close()

    admin = await connect(provisioned, ADMIN_USER)
    info = await admin.jetstream().stream_info(CREDITS.name(NS))
    assert info.state.messages == 0
    await admin.drain()


async def test_an_integrator_gets_its_merchant_events_only(provisioned):
    errors: list[str] = []
    integrator = await connect(provisioned, integrator_user("7"), errors)
    received: list[str] = []

    async def on_msg(msg) -> None:
        received.append(msg.subject)

    for subject in (NS.order("7"), NS.credit("7"), NS.webhook("7")):
        await integrator.subscribe(subject, cb=on_msg)
    await integrator.flush()

    matcher = await connect(provisioned, "matcher")
    now = datetime.now(UTC)
    for merchant in ("7", "8"):
        order = builders.order(f"1000{merchant}", merchant_id=merchant)
        paid = OrderPaid(order=order, credit_id=f"c{merchant}", paid_at=now)
        decided = CreditMatched(
            credit=builders.credit(f"c{merchant}"), order_id=order.order_id, merchant_id=merchant
        )
        for event in (paid, decided):
            await matcher.jetstream().publish(
                event.subject(NS), event.to_bytes(), headers=event.headers()
            )
    await asyncio.sleep(0.3)
    assert sorted(received) == [NS.credit("7", "matched"), NS.order("7", "paid")]

    sneaky = await connect(provisioned, integrator_user("7"), errors)
    await sneaky.subscribe(NS.order("8"))
    await sneaky.subscribe(f"{NS.prefix}.>")
    await asyncio.sleep(0.3)
    assert sum("permissions violation" in e.lower() for e in errors) >= 2, errors
    for client in (integrator, sneaky, matcher):
        await client.close()
