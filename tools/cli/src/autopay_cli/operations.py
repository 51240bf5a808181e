"""Operator actions shared by `autopay admin` and the dev stack's bootstrap."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats
import redis.asyncio as aioredis
from nats.js import JetStreamContext
from nats.js.errors import BadRequestError, ServiceUnavailableError

from autopay_cli.config import CliSettings
from autopay_contracts import MailboxRegistered, provision_streams
from autopay_contracts.streams import ACCOUNTS, MAILBOX_CONFIG
from autopay_runtime.connections import open_redis
from autopay_runtime.settings import nats_connect_options
from autopay_store.accounts import Accounts, Card, NewMerchant
from autopay_store.journal import AccountJournal
from autopay_store.sandbox import SandboxCards
from autopay_store.tariffs import Tariffs, put_on_tariff


def now() -> datetime:
    return datetime.now(UTC)


class Operator:
    """Opens the Redis and NATS connections the admin commands need, for one command. Every
    account change is copied to the ACCOUNTS bucket (`autopay_store.journal`), as the
    gateway's are."""

    def __init__(self, settings: CliSettings) -> None:
        self.settings = settings
        self.redis = open_redis(settings.redis_url)
        self.nats: nats.NATS | None = None

    async def open(self) -> Operator:
        self.nats = await nats.connect(**self.settings.nats_connect_options)
        bucket = await self.nats.jetstream().key_value(ACCOUNTS.name(self.settings.ns))
        self.journal = AccountJournal(self.redis, self.settings.keys, bucket)
        keys = self.settings.keys
        self.accounts = Accounts(self.redis, keys, self.settings.secret_box(), self.journal)
        self.sandbox = SandboxCards(self.redis, keys, self.journal)
        self.tariffs = Tariffs(self.redis, keys, self.journal)
        return self

    async def close(self) -> None:
        await self.redis.aclose()
        if self.nats is not None:
            await self.nats.drain()

    async def __aenter__(self) -> Operator:
        try:
            return await self.open()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def create_merchant(
        self, name: str, tariff: str, max_payments: int, days: int, test: bool
    ) -> NewMerchant:
        """A merchant on `tariff`: a tariff of that name (`admin tariff create`) gives its
        payment limit, duration and rate limit; else `max_payments` and `days` apply."""
        created = await self.accounts.create_merchant(
            name,
            tariff_name=tariff,
            max_payments=max_payments,
            days=days,
            test_mode=test,
            now=now(),
        )
        found = await self.tariffs.get(tariff)
        if found is None:
            return created
        merchant = await put_on_tariff(self.accounts, created.merchant.merchant_id, found, now())
        return NewMerchant(merchant, created.api_key, created.webhook_secret)

    async def add_sandbox_card(self, merchant_id: str, card_last4: str, gmail: str) -> Card:
        """A card in the merchant's sandbox (test keys): no password, never watched."""
        if await self.accounts.get_merchant(merchant_id) is None:
            raise KeyError(f"merchant {merchant_id} does not exist")
        return await self.sandbox.add(merchant_id, card_last4, gmail)

    async def create_sandbox_merchant(
        self, name: str, card_last4: str, gmail: str
    ) -> tuple[NewMerchant, Card]:
        """A test-mode merchant (its key is a test key) with one sandbox card."""
        created = await self.create_merchant(name, "Sandbox", 100_000, 365, test=True)
        card = await self.add_sandbox_card(created.merchant.merchant_id, card_last4, gmail)
        return created, card

    async def add_card(
        self,
        merchant_id: str,
        card_last4: str,
        gmail: str,
        app_password: str | None,
        allow_forwarded: bool = False,
        aliases: tuple[str, ...] | None = None,
    ) -> Card:
        """Connect a card and tell mail-ingest to watch its mailbox (when a password is known).
        `aliases` replace the mailbox's declared aliases (None keeps them). Raises `CardTaken`
        or `MailboxTaken` when the card or the mailbox belongs to another merchant."""
        if await self.accounts.get_merchant(merchant_id) is None:
            raise KeyError(f"merchant {merchant_id} does not exist")
        card = await self.accounts.add_card(
            merchant_id, card_last4, gmail, app_password, aliases=aliases
        )
        password = app_password or await self.accounts.app_password(card.mailbox_id)
        if password is not None:
            mailbox = await self.accounts.mailbox(card.gmail)
            declared = mailbox.aliases if mailbox else ()
            await publish_mailbox(self.settings, card, password, allow_forwarded, declared)
        return card


async def publish_mailbox(
    settings: CliSettings,
    card: Card,
    app_password: str,
    allow_forwarded: bool = False,
    aliases: tuple[str, ...] = (),
) -> None:
    event = MailboxRegistered(
        mailbox_id=card.mailbox_id,
        gmail=card.gmail,
        revision=time.time_ns() // 1_000_000,
        imap_host=settings.imap_host,
        imap_port=settings.imap_port,
        imap_tls=settings.imap_tls,
        username=card.gmail,
        password_encrypted=settings.secret_box().encrypt(app_password),
        aliases=aliases,
        allow_forwarded=allow_forwarded,
    )
    client = await nats.connect(**settings.nats_connect_options)
    try:
        js = client.jetstream()
        await js.publish(
            event.subject(settings.ns),
            event.to_bytes(),
            stream=MAILBOX_CONFIG.name(settings.ns),
            headers=event.headers(),
            timeout=5,
        )
    finally:
        await client.drain()


@contextlib.asynccontextmanager
async def connections(
    settings: CliSettings,
) -> AsyncIterator[tuple[aioredis.Redis, JetStreamContext]]:
    """Redis and JetStream for one operator command, both closed when it ends."""
    client = await nats.connect(**settings.nats_connect_options)
    redis = open_redis(settings.redis_url)
    try:
        yield redis, client.jetstream()
    finally:
        await redis.aclose()
        await client.drain()


PROVISION_TIMEOUT_S = 30.0
NO_PLACEMENT = 10005  # JetStream's "no suitable peers for placement"


async def provision(
    nats_url: str,
    namespace: str,
    replicas: int = 1,
    timeout: float = PROVISION_TIMEOUT_S,  # noqa: ASYNC109 - a deadline for retries
) -> list[str]:
    """Declare every stream. A cluster that has just started (or lost a node) may answer 503,
    or have no peers yet for R3 placement: that is retried until `timeout`."""
    from autopay_contracts import Namespace

    client = await nats.connect(**nats_connect_options(nats_url))
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                return await provision_streams(client.jetstream(), Namespace(namespace), replicas)
            except (ServiceUnavailableError, BadRequestError) as exc:
                transient = isinstance(exc, ServiceUnavailableError) or exc.err_code == NO_PLACEMENT
                if not transient or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await client.drain()
