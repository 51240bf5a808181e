"""The gateway app built by `build_app`, its lifespan driven, against this test's NATS/Redis."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from autopay_contracts import Namespace
from autopay_gateway.bootstrap import build_app
from autopay_gateway.settings import GatewaySettings
from autopay_store.accounts import Accounts, NewMerchant
from autopay_store.keys import Keys
from autopay_store.ledger import Ledger
from autopay_store.orders import OrderBook
from autopay_store.sandbox import SandboxCards
from autopay_store.secrets import SecretBox
from autopay_testing.waiting import eventually_async

CARD = {"card_last4": "6412", "gmail": "karta@gmail.com"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    settings: GatewaySettings
    accounts: Accounts
    orders: OrderBook
    secrets: SecretBox
    ns: Namespace
    sandbox_cards: SandboxCards
    ledger: Ledger

    async def merchant(self, name: str = "Shop", card: bool = True, **kw) -> NewMerchant:
        new = await self.accounts.create_merchant(name, now=datetime.now(UTC), **kw)
        if card:
            await self.accounts.add_card(new.merchant.merchant_id, **CARD)
        return new

    async def post(self, path: str, key: str | None, json=None, **headers) -> httpx.Response:
        if key is not None:
            headers["x-api-key"] = key
        return await self.client.post(path, json=json, headers=headers)

    async def get(self, path: str, key: str, **headers) -> httpx.Response:
        return await self.client.get(path, headers={"x-api-key": key, **headers})


@pytest.fixture
def secret_key() -> str:
    return SecretBox.generate_key()


@pytest.fixture
def settings(nats_url, redis_url, redis_prefix, namespace, secret_key) -> GatewaySettings:
    return GatewaySettings(
        nats_url=nats_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        namespace=namespace.root,
        secret_keys=secret_key,
        allow_http_loopback_webhooks=True,
        imap_host="127.0.0.1",
        imap_port=closed_port(),
        imap_tls=False,
        imap_timeout_seconds=3,
        login_checks_per_minute=1000,  # test_cards.py checks the real limit
    )


@contextlib.asynccontextmanager
async def running(settings: GatewaySettings, redis_client, **build) -> AsyncIterator[Gateway]:
    """The app with its lifespan running, and an HTTP client speaking to it in-process."""
    app = build_app(settings, **build)
    keys = Keys(settings.redis_prefix)
    secrets = SecretBox(settings.secret_keys.get_secret_value())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield Gateway(
                app=app,
                client=client,
                settings=settings,
                accounts=Accounts(redis_client, keys, secrets),
                orders=OrderBook(redis_client, keys),
                secrets=secrets,
                ns=settings.ns,
                sandbox_cards=SandboxCards(redis_client, keys),
                ledger=Ledger(redis_client, keys),
            )


@pytest.fixture
async def gw(settings, streams, redis_client) -> AsyncIterator[Gateway]:
    async with running(settings, redis_client) as gateway:
        yield gateway


@pytest.fixture
def start_gateway(redis_client):
    """Start another app (e.g. with other settings) inside a test: `async with start(s) as gw`."""

    def start(settings: GatewaySettings, **build):
        return running(settings, redis_client, **build)

    return start


@pytest.fixture
def card() -> dict[str, str]:
    return dict(CARD)


# --- a real gateway process (`python -m autopay_gateway`) ---------------------------------


@contextmanager
def gateway_process(settings, port: int, **env: str) -> Iterator[subprocess.Popen]:
    variables = {
        **os.environ,
        "AUTOPAY_NATS_URL": settings.nats_url,
        "AUTOPAY_REDIS_URL": settings.redis_url,
        "AUTOPAY_NAMESPACE": settings.namespace,
        "AUTOPAY_REDIS_PREFIX": settings.redis_prefix,
        "AUTOPAY_SECRET_KEYS": settings.secret_keys.get_secret_value(),
        "AUTOPAY_HTTP_PORT": str(port),
        "AUTOPAY_METRICS_PORT": "0",  # a fixed one would collide between parallel tests
        "AUTOPAY_AUTH_CACHE_SECONDS": "0",
        "AUTOPAY_OUTBOX_GRACE_SECONDS": "0.5",
        "AUTOPAY_OUTBOX_INTERVAL_SECONDS": "0.2",
        "AUTOPAY_LOG_LEVEL": "WARNING",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "autopay_gateway"],
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def ready(client: httpx.AsyncClient, process: subprocess.Popen) -> None:
    async def answers() -> bool:
        assert process.poll() is None, "the gateway exited"
        try:
            return (await client.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually_async(answers, what="gateway ready")
