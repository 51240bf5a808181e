"""Who may publish and subscribe what on NATS: one user per service, one per integrator.

Each service publishes exactly the events it owns and consumes exactly the streams it reads;
anything else is a permissions violation at the server. So the Internet-facing gateway cannot
publish a credit (`credit.*.received` is mail-ingest's), and no service can delete a stream or
another service's consumer. An integrator reads, as plain NATS subscriptions, only the subjects
whose owner token is its merchant (`order.<id>.>`, `webhook.<id>.>`, `credit.<id>.>`: the
matcher's credit decisions are keyed by merchant).

Replies (PubAcks, pulled messages) go to a per-user inbox prefix (`inbox_prefix`), so one user
cannot read another's replies either. `nats_authorization` renders the server's `authorization`
block from these tables; the dev stack, compose and Kubernetes all use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from autopay_contracts.events import (
    CreditAmbiguous,
    CreditDismissed,
    CreditMatched,
    CreditReceived,
    CreditRejected,
    CreditUnmatched,
    DeadLetter,
    Event,
    MailboxAuthFailed,
    MailboxConnected,
    MailboxDown,
    MailboxRegistered,
    MailboxRemoved,
    MailboxUp,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPaid,
    SandboxTransferRequested,
    WebhookDelivered,
    WebhookExhausted,
    WebhookFailed,
)
from autopay_contracts.namespace import Namespace
from autopay_contracts.streams import (
    ACCOUNTS,
    CREDITS,
    MAILBOX_CONFIG,
    MAILBOXES,
    ORDERS,
    SANDBOX,
    WEBHOOKS,
    BucketSpec,
    StreamSpec,
)

ADMIN_USER = "admin"
"""The operator's and the provisioning job's user: every subject (streams, consumers, replay)."""


@dataclass(frozen=True)
class ServiceAccess:
    publishes: tuple[type[Event], ...]
    consumes: tuple[StreamSpec, ...] = ()
    dead_letters: str | None = None
    """The service token of the dead letters it records (`deadletter.<service>.recorded`)."""
    buckets: tuple[BucketSpec, ...] = ()
    """Key-value buckets it reads and writes (entry by entry: no listing, no deleting)."""

    @property
    def events(self) -> tuple[type[Event], ...]:
        """Every event type the service publishes: its `EventPublisher` registers these."""
        return (*self.publishes, DeadLetter) if self.dead_letters else self.publishes


SERVICES: dict[str, ServiceAccess] = {
    # Each service's bootstrap publishes exactly `SERVICES[name].events`, so this table is what
    # the NATS permissions are made of and what the services do.
    "gateway": ServiceAccess(
        publishes=(
            OrderCreated,
            OrderCancelled,
            MailboxRegistered,
            MailboxRemoved,
            SandboxTransferRequested,
            # a merchant's manual match and dismissal (never a credit.received: only mail-ingest
            # reads bank mail, and only a received credit makes the matcher pay)
            OrderPaid,
            CreditMatched,
            CreditDismissed,
        ),
        # the durable copy of every account change it makes (cards, keys, settings...)
        buckets=(ACCOUNTS,),
    ),
    "mail-ingest": ServiceAccess(
        publishes=(
            CreditReceived,
            CreditRejected,
            MailboxConnected,
            MailboxAuthFailed,
            MailboxDown,
            MailboxUp,
        ),
        consumes=(MAILBOX_CONFIG, SANDBOX),
    ),
    "matcher": ServiceAccess(
        publishes=(OrderPaid, OrderExpired, CreditMatched, CreditUnmatched, CreditAmbiguous),
        consumes=(CREDITS,),
        dead_letters="matcher",
    ),
    "notifier": ServiceAccess(
        publishes=(WebhookDelivered, WebhookFailed, WebhookExhausted),
        consumes=(ORDERS,),
    ),
    # The merchant's Telegram bot publishes nothing: it changes state only through the
    # gateway's APIs, and reads the streams to alert merchants. Its own state (which chat is
    # which merchant, the subscriptions it sold) is copied to the ACCOUNTS bucket.
    "merchant-bot": ServiceAccess(
        publishes=(),
        consumes=(ORDERS, CREDITS, WEBHOOKS, MAILBOXES),
        buckets=(ACCOUNTS,),
    ),
}


def inbox_prefix(user: str) -> str:
    """Where the replies to `user`'s requests arrive; only `user` may subscribe there."""
    return f"_INBOX.{user}"


def pull_inbox_prefix(user: str) -> bytes:
    """The same, for a FastStream pull subscriber (which takes it per subscriber, dot included,
    instead of from the connection)."""
    return f"{inbox_prefix(user)}.".encode()


@dataclass(frozen=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    extra: dict = field(default_factory=dict)

    def as_nats(self) -> dict:
        return {
            "publish": {"allow": list(self.publish)},
            "subscribe": {"allow": list(self.subscribe)},
            **self.extra,
        }


def _consumer_api(stream: str) -> list[str]:
    api = "$JS.API.CONSUMER"
    return [
        f"{api}.CREATE.{stream}",
        f"{api}.CREATE.{stream}.>",
        f"{api}.DURABLE.CREATE.{stream}.>",
        f"{api}.INFO.{stream}.>",
        f"{api}.MSG.NEXT.{stream}.>",
        f"{api}.DELETE.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _bucket_api(ns: Namespace, bucket: BucketSpec) -> list[str]:
    """Put, update and get entries of one bucket (puts are publishes to `$KV.<bucket>.<key>`)."""
    stream = bucket.stream(ns)
    return [
        f"$KV.{bucket.name(ns)}.>",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
    ]


def service_permissions(ns: Namespace, service: str) -> Permissions:
    access = SERVICES[service]
    publish = [event.subject_pattern(ns) for event in access.publishes]
    if access.dead_letters:
        publish.append(ns.deadletter(access.dead_letters, DeadLetter.event_type.split(".")[1]))
    publish += ["$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES"]
    for spec in access.consumes:
        publish += _consumer_api(spec.name(ns))
    for bucket in access.buckets:
        publish += _bucket_api(ns, bucket)
    subscribe = [f"{inbox_prefix(service)}.>"]
    return Permissions(tuple(dict.fromkeys(publish)), tuple(subscribe))


def integrator_user(merchant_id: str) -> str:
    return f"integrator-{merchant_id}"


def integrator_permissions(ns: Namespace, merchant_id: str) -> Permissions:
    """Live events of one merchant, as core NATS subscriptions; nothing to publish but the
    requests its client library makes by itself (none are allowed to reach a stream)."""
    own = [
        f"{ns.prefix}.{aggregate}.{merchant_id}.*" for aggregate in ("order", "webhook", "credit")
    ]
    return Permissions(
        publish=(),
        subscribe=(*own, f"{inbox_prefix(integrator_user(merchant_id))}.>"),
    )


@dataclass(frozen=True)
class NatsUser:
    user: str
    password: str
    permissions: Permissions | None = None
    """None: every subject (the admin user)."""


_VARIABLE = re.compile(r'"password": "\$([A-Z][A-Z0-9_]*)"')


def nats_authorization(users: list[NatsUser]) -> str:
    """The server's `authorization { users = [...] }` block (JSON is valid NATS config). A
    password written `$NAME` is left a reference to the server's environment variable NAME, so
    the file holds no secret and can be committed."""
    rendered = []
    for user in users:
        entry: dict = {"user": user.user, "password": user.password}
        if user.permissions is not None:
            entry["permissions"] = user.permissions.as_nats()
        rendered.append(entry)
    text = "authorization " + json.dumps({"users": rendered}, indent=2) + "\n"
    return _VARIABLE.sub(r'"password": $\1', text)


def password_variable(user: str) -> str:
    """The environment variable of the NATS server that holds `user`'s password."""
    return "NATS_PASSWORD_" + user.upper().replace("-", "_")


def deployed_authorization(ns: Namespace) -> str:
    """The `authorization` block for compose and Kubernetes: every service user and the admin,
    their passwords read from the server's environment (`password_variable`)."""
    variables = {name: "$" + password_variable(name) for name in (ADMIN_USER, *SERVICES)}
    return nats_authorization(every_service_user(ns, variables))


def every_service_user(ns: Namespace, passwords: dict[str, str]) -> list[NatsUser]:
    """The admin user and one user per service, with their passwords from `passwords`."""
    users = [NatsUser(ADMIN_USER, passwords[ADMIN_USER])]
    users += [NatsUser(name, passwords[name], service_permissions(ns, name)) for name in SERVICES]
    return users


__all__ = [
    "ADMIN_USER",
    "SERVICES",
    "NatsUser",
    "Permissions",
    "deployed_authorization",
    "every_service_user",
    "inbox_prefix",
    "integrator_permissions",
    "integrator_user",
    "nats_authorization",
    "password_variable",
    "pull_inbox_prefix",
    "service_permissions",
]
