"""Request bodies: decode and validate into commands (pure; every failure is a 400 ApiError).

Hand-written rather than FastAPI body models so that every mistake gets the original service's
kind of answer (400 with a plain message naming the parameter) instead of a 422 error list.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from autopay_contracts import is_card_last4, normalize_gmail
from autopay_gateway.clock import TASHKENT
from autopay_gateway.messages import ApiError
from autopay_runtime.destinations import internal_host

MAX_CLIENT_USER_ID = 128
MAX_CLIENT_USER_DATA_BYTES = 4096
MAX_URL_LENGTH = 2048
MAX_ORDER_ID = 32
MAX_ALIASES = 10

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+")
_LOOPBACK_HOSTS = {"localhost"}


@dataclass(frozen=True)
class CreatePayment:
    card_last4: str
    gmail: str
    amount: int | None = None
    amount_base: int | None = None
    client_user_id: str | None = None
    client_user_data: dict[str, Any] | None = None
    webhook_url: str | None = None
    notify_events: tuple[str, ...] | None = None
    """None: the merchant's default (`PUT /api/settings`)."""


ORDER_EVENTS = ("paid", "expired", "cancelled")


def notify_events(value: Any) -> tuple[str, ...] | None:
    """`notify_events`: which order events are notified, of `paid`, `expired`, `cancelled`;
    `paid` always is. Absent (or null) → None."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(v in ORDER_EVENTS for v in value):
        raise ApiError(400, "invalid_notify_events", allowed=", ".join(ORDER_EVENTS))
    return tuple(event for event in ORDER_EVENTS if event == "paid" or event in value)


def order_event(value: Any) -> str | None:
    """An order event name (`paid`, `expired`, `cancelled`), or None when absent."""
    if value is None:
        return None
    if value not in ORDER_EVENTS:
        raise ApiError(400, "invalid_notify_events", allowed=", ".join(ORDER_EVENTS))
    return value


@dataclass(frozen=True)
class Settings:
    webhook_url: str | None
    notify_events: tuple[str, ...]


def settings(body: dict[str, Any], *, allow_http_loopback: bool) -> Settings:
    """`PUT /api/settings {webhook_url, notify_events}`: both optional; a null or empty
    `webhook_url` removes the default URL."""
    return Settings(
        webhook_url=webhook_url(body.get("webhook_url"), allow_http_loopback),
        notify_events=notify_events(body.get("notify_events")) or ("paid",),
    )


@dataclass(frozen=True)
class AddCard:
    card_last4: str
    gmail: str
    app_password: str | None
    """Required of a live key; a sandbox card (test key) needs none and keeps none."""
    aliases: tuple[str, ...] | None = None
    """Other addresses that deliver to the mailbox (normalized); None keeps the stored ones."""


def decode_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json")
    return body


def _amount(body: dict[str, Any], field: str, max_amount: int) -> int:
    value = body[field]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_amount:
        raise ApiError(400, "invalid_amount", field=field, max=max_amount)
    return value


def card_last4(body: dict[str, Any]) -> str:
    if "card_last4" not in body or body["card_last4"] is None:
        raise ApiError(400, "missing", field="card_last4")
    value = body["card_last4"]
    if not is_card_last4(value):  # a str of exactly four ASCII digits, nothing around them
        raise ApiError(400, "invalid_card_last4")
    return value


def _address(value: Any) -> str | None:
    """The normalized form of an e-mail address, or None when `value` is not one."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value.strip()):
        return None
    return normalize_gmail(value)


def gmail(body: dict[str, Any]) -> str:
    if "gmail" not in body or body["gmail"] is None:
        raise ApiError(400, "missing", field="gmail")
    address = _address(body["gmail"])
    if address is None:
        raise ApiError(400, "invalid_gmail")
    return address


def aliases(body: dict[str, Any], mailbox: str) -> tuple[str, ...] | None:
    """`aliases`: up to `MAX_ALIASES` addresses, normalized, without duplicates or the
    mailbox's own address. Absent (or null) → None: the stored aliases stay."""
    value = body.get("aliases")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_ALIASES:
        raise ApiError(400, "invalid_aliases", max=MAX_ALIASES)
    result: list[str] = []
    for item in value:
        address = _address(item)
        if address is None:
            raise ApiError(400, "invalid_aliases", max=MAX_ALIASES)
        if address != mailbox and address not in result:
            result.append(address)
    return tuple(result)


def webhook_url(value: Any, allow_http_loopback: bool) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        raise ApiError(400, "invalid_webhook_url")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ApiError(400, "invalid_webhook_url") from None
    if not host or any(c.isspace() for c in value):
        raise ApiError(400, "invalid_webhook_url")
    loopback_ok = allow_http_loopback and _is_loopback(host)
    if parts.scheme == "https" or (parts.scheme == "http" and loopback_ok):
        # Refused now rather than at delivery: the notifier's guard (which also vets what a
        # name resolves to) stays, but the merchant learns of the mistake at once.
        if not loopback_ok and internal_host(host) is not None:
            raise ApiError(400, "webhook_url_internal")
        return value
    raise ApiError(400, "invalid_webhook_url")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_payment(
    body: dict[str, Any], *, max_amount: int, allow_http_loopback: bool
) -> CreatePayment:
    has_amount = body.get("amount") is not None
    has_base = body.get("amount_base") is not None
    if has_amount and has_base:
        raise ApiError(400, "amount_conflict")
    if not has_amount and not has_base:
        raise ApiError(400, "missing", field="amount")
    amount = _amount(body, "amount", max_amount) if has_amount else None
    amount_base = _amount(body, "amount_base", max_amount) if has_base else None

    user_id = body.get("client_user_id")
    if user_id is not None:
        if isinstance(user_id, int) and not isinstance(user_id, bool):
            user_id = str(user_id)
        if not isinstance(user_id, str) or len(user_id) > MAX_CLIENT_USER_ID:
            raise ApiError(400, "invalid_client_user_id", max=MAX_CLIENT_USER_ID)

    user_data = body.get("client_user_data")
    if user_data is not None and (
        not isinstance(user_data, dict) or len(orjson.dumps(user_data)) > MAX_CLIENT_USER_DATA_BYTES
    ):
        raise ApiError(400, "invalid_client_user_data", max=MAX_CLIENT_USER_DATA_BYTES)

    return CreatePayment(
        card_last4=card_last4(body),
        gmail=gmail(body),
        amount=amount,
        amount_base=amount_base,
        client_user_id=user_id,
        client_user_data=user_data,
        webhook_url=webhook_url(body.get("webhook_url"), allow_http_loopback),
        notify_events=notify_events(body.get("notify_events")),
    )


def order_id(body: dict[str, Any]) -> str:
    if body.get("order_id") is None:
        raise ApiError(400, "missing", field="order_id")
    value = body["order_id"]
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ORDER_ID:
        raise ApiError(400, "invalid_order_id")
    return value.strip()


def add_card(body: dict[str, Any], *, sandbox: bool = False) -> AddCard:
    """A live card needs its app password; a sandbox card ignores one (it is never stored)."""
    password = body.get("app_password")
    if sandbox:
        password = None
    elif password is None:
        raise ApiError(400, "missing", field="app_password")
    elif not isinstance(password, str) or not 1 <= len(password.strip()) <= 128:
        raise ApiError(400, "invalid_app_password")
    last4, mailbox = card_last4(body), gmail(body)
    return AddCard(
        card_last4=last4,
        gmail=mailbox,
        app_password=password.strip() if password is not None else None,
        aliases=None if sandbox else aliases(body, mailbox),
    )


@dataclass(frozen=True)
class SandboxTransfer:
    card_last4: str
    gmail: str
    amount: int
    """So'm, as in create-payment."""


def sandbox_transfer(body: dict[str, Any], *, max_amount: int) -> SandboxTransfer:
    if body.get("amount") is None:
        raise ApiError(400, "missing", field="amount")
    return SandboxTransfer(
        card_last4=card_last4(body),
        gmail=gmail(body),
        amount=_amount(body, "amount", max_amount),
    )


MAX_TRANSACTIONS_PAGE = 200


@dataclass(frozen=True)
class TransactionQuery:
    status: str | None
    since: datetime | None
    limit: int
    cursor: str | None


def transaction_query(params: Mapping[str, str], statuses: tuple[str, ...]) -> TransactionQuery:
    """`GET /api/transactions` query: `status`, `since` (Tashkent `YYYY-MM-DD HH:MM:SS` or ISO
    8601 with an offset), `limit` (1..200, default 50), `cursor`."""
    status = params.get("status") or None
    if status is not None and status not in statuses:
        raise ApiError(400, "invalid_status_filter", allowed=", ".join(statuses))
    since = None
    if raw := params.get("since"):
        try:
            since = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ApiError(400, "invalid_since") from None
        if since.tzinfo is None:
            since = since.replace(tzinfo=TASHKENT)
    raw_limit = params.get("limit") or "50"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_TRANSACTIONS_PAGE:
        raise ApiError(400, "invalid_limit", max=MAX_TRANSACTIONS_PAGE)
    cursor = params.get("cursor") or None
    if cursor is not None and len(cursor) > 200:
        raise ApiError(400, "invalid_cursor")
    return TransactionQuery(status, since, int(raw_limit), cursor)
