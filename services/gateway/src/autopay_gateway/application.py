"""What the API does: the use cases, one area per module, composed for the routes.

Each use case takes the authenticated merchant and a validated command and returns the response
payload, or raises `ApiError` with the status and message code of the original service:
`access` (key, rate limit, subscription), `payments`, `cards`, `sandbox`, `account`
(subscription and settings), `transactions` (the ledger, manual match), `webhooks` (the
webhook tools) and `operators` (the admin API: sign-ups, keys, subscriptions). Adapters are
passed in; the clock too.
"""

from __future__ import annotations

from autopay_gateway.access import Access, Caller
from autopay_gateway.account import Account
from autopay_gateway.adapters.imap_login import ImapLoginChecker
from autopay_gateway.cards import Cards
from autopay_gateway.operators import Operators
from autopay_gateway.payments import Payments
from autopay_gateway.sandbox import Sandbox
from autopay_gateway.settings import GatewaySettings
from autopay_gateway.transactions import Transactions
from autopay_gateway.webhooks import Webhooks
from autopay_runtime.publishing import EventPublisher
from autopay_store.accounts import Accounts
from autopay_store.idempotency import IdempotencyStore
from autopay_store.invites import Invites
from autopay_store.keys import Keys
from autopay_store.mailbox_state import MailboxHealth
from autopay_store.orders import OrderBook
from autopay_store.ratelimit import RateLimiter
from autopay_store.sandbox import SandboxCards
from autopay_store.secrets import SecretBox
from autopay_store.tariffs import Tariffs

__all__ = ["Caller", "Gateway"]


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        accounts: Accounts,
        orders: OrderBook,
        publisher: EventPublisher,
        idempotency: IdempotencyStore,
        limiter: RateLimiter,
        health: MailboxHealth,
        imap: ImapLoginChecker,
        secrets: SecretBox,
        sandbox: SandboxCards,
        transactions: Transactions,
        webhooks: Webhooks,
        tariffs: Tariffs,
        invites: Invites,
        keys: Keys,
    ) -> None:
        self.settings = settings
        self.orders = orders
        self.publisher = publisher
        self.idempotency = idempotency
        self.access = Access(settings, accounts, limiter)
        self.cards = Cards(settings, accounts, sandbox, health, imap, limiter, publisher, secrets)
        self.payments = Payments(settings, accounts, orders, publisher, self.cards)
        self.sandbox = Sandbox(settings, publisher, self.cards)
        self.account = Account(accounts, self.access)
        self.transactions = transactions
        self.webhooks = webhooks
        self.operators = Operators(accounts, tariffs, invites, keys, self.access)
