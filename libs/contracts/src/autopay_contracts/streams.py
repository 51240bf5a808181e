"""JetStream stream definitions and the one function that declares them.

Streams are declared by `provision_streams` only (run by `autopay nats provision`, a Kubernetes
Job, or the dev stack before it starts the services). Services bind to them with
`JStream(name, declare=False)` and never redeclare, so a rollout cannot overwrite their options.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError

from autopay_contracts.events import Event
from autopay_contracts.namespace import Namespace

DAY = 24 * 3600


@dataclass(frozen=True)
class StreamSpec:
    base_name: str
    aggregate: str
    description: str
    max_age_s: float
    duplicate_window_s: float = 10 * 60
    max_msgs_per_subject: int = -1

    def name(self, ns: Namespace) -> str:
        return ns.stream_name(self.base_name)

    def subjects(self, ns: Namespace) -> list[str]:
        return [ns.all_of(self.aggregate)]

    def config(self, ns: Namespace, replicas: int = 1) -> StreamConfig:
        return StreamConfig(
            name=self.name(ns),
            description=self.description,
            subjects=self.subjects(ns),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            max_msgs_per_subject=self.max_msgs_per_subject,
        )


ORDERS = StreamSpec(
    "ORDERS", "order", "Order lifecycle: created, paid, expired, cancelled", 90 * DAY
)
CREDITS = StreamSpec(
    "CREDITS", "credit", "Bank notifications and their matching outcomes", 90 * DAY
)
WEBHOOKS = StreamSpec("WEBHOOKS", "webhook", "Webhook delivery outcomes", 30 * DAY)
MAILBOXES = StreamSpec("MAILBOXES", "mailbox", "Mailbox health transitions", 30 * DAY)
MAILBOX_CONFIG = StreamSpec(
    "MAILBOX_CONFIG",
    "mailbox-config",
    "Desired state of every watched mailbox (latest per mailbox)",
    max_age_s=0,
    max_msgs_per_subject=1,
)

SANDBOX = StreamSpec(
    "SANDBOX",
    "sandbox",
    "Test-mode requests (simulated transfers), turned into sandbox credits by mail-ingest",
    1 * DAY,
)

DEADLETTERS = StreamSpec(
    "DEADLETTERS",
    "deadletter",
    "Messages a service could not take, kept for inspection and replay",
    90 * DAY,
)

STREAMS: tuple[StreamSpec, ...] = (
    ORDERS,
    CREDITS,
    WEBHOOKS,
    MAILBOXES,
    MAILBOX_CONFIG,
    SANDBOX,
    DEADLETTERS,
)
_BY_AGGREGATE = {spec.aggregate: spec for spec in STREAMS}


@dataclass(frozen=True)
class BucketSpec:
    """A JetStream key-value bucket (a stream `KV_<name>` underneath)."""

    base_name: str
    description: str
    history: int

    def name(self, ns: Namespace) -> str:
        return ns.stream_name(self.base_name)

    def stream(self, ns: Namespace) -> str:
        return f"KV_{self.name(ns)}"

    def config(self, ns: Namespace, replicas: int = 1) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name(ns),
            description=self.description,
            history=self.history,
            storage=StorageType.FILE,
            replicas=replicas,
            direct=True,
        )


ACCOUNTS = BucketSpec(
    "ACCOUNTS",
    "The durable copy of the accounts kept in Redis (merchants, key hashes, cards, mailbox "
    "owners with their encrypted passwords, secrets, tariffs, subscriptions): one entry per "
    "Redis key, with history",
    history=16,
)
BUCKETS: tuple[BucketSpec, ...] = (ACCOUNTS,)


def stream_for(event: Event | type[Event]) -> StreamSpec:
    """The stream that stores events of this type."""
    return _BY_AGGREGATE[event.aggregate]


async def provision_streams(js: JetStreamContext, ns: Namespace, replicas: int = 1) -> list[str]:
    """Create or update every stream, and create every key-value bucket; idempotent, safe
    to run on every deploy."""
    names = []
    for spec in STREAMS:
        name, config = spec.name(ns), spec.config(ns, replicas)
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            await js.update_stream(config)
        names.append(name)
    for bucket in BUCKETS:
        try:
            await js.key_value(bucket.name(ns))
        except BucketNotFoundError:
            await js.create_key_value(bucket.config(ns, replicas))
        names.append(bucket.stream(ns))
    return names
