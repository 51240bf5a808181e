"""AutoPay contracts: every event, subject and stream the services exchange.

Services import from here and nowhere else for anything that crosses a process boundary.
"""

from autopay_contracts.events import (
    EVENT_TYPES,
    Credit,
    CreditAmbiguous,
    CreditMatched,
    CreditReceived,
    CreditRejected,
    CreditUnmatched,
    Event,
    MailboxAuthFailed,
    MailboxConnected,
    MailboxDown,
    MailboxRegistered,
    MailboxRemoved,
    MailboxUp,
    Order,
    OrderCancelled,
    OrderCreated,
    OrderExpired,
    OrderPaid,
    WebhookDelivered,
    WebhookExhausted,
    WebhookFailed,
    parse_event,
)
from autopay_contracts.ids import event_id, mailbox_id_for
from autopay_contracts.namespace import Namespace
from autopay_contracts.streams import STREAMS, StreamSpec, provision_streams, stream_for

__all__ = [
    "EVENT_TYPES",
    "STREAMS",
    "Credit",
    "CreditAmbiguous",
    "CreditMatched",
    "CreditReceived",
    "CreditRejected",
    "CreditUnmatched",
    "Event",
    "MailboxAuthFailed",
    "MailboxConnected",
    "MailboxDown",
    "MailboxRegistered",
    "MailboxRemoved",
    "MailboxUp",
    "Namespace",
    "Order",
    "OrderCancelled",
    "OrderCreated",
    "OrderExpired",
    "OrderPaid",
    "StreamSpec",
    "WebhookDelivered",
    "WebhookExhausted",
    "WebhookFailed",
    "event_id",
    "mailbox_id_for",
    "parse_event",
    "provision_streams",
    "stream_for",
]
