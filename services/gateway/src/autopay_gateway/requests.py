"""Request bodies: pydantic models of the commands, and one mapper from their validation errors
to the original service's answers (pure; every failure is a 400 `ApiError`).

Each field is `Annotated[Any, BeforeValidator(check)]`, validated by `check(value, info)` alone
(no coercion by pydantic first): the check decides what the original accepts (an integer amount
given as `50037.0`, a numeric `client_user_id`, a `card_last4` that is exactly four ASCII
digits, an address normalized the Gmail way, ...) and raises `Refused(code, **params)` with the
message catalogue's code. `decode` validates a body against a model with the settings as
context and turns the first error, in the order the fields are declared (the original's order of
checks), into `ApiError(400, code, ...)`: a field that is absent is `missing`. So no answer is a
422 error list, and adding a parameter is a field and its message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator
from pydantic.functional_validators import BeforeValidator
from pydantic_core import PydanticCustomError

from autopay_contracts import is_card_last4, normalize_gmail
from autopay_contracts.local_time import TASHKENT
from autopay_gateway.messages import ApiError
from autopay_runtime.destinations import internal_host

MAX_CLIENT_USER_ID = 128
MAX_CLIENT_USER_DATA_BYTES = 4096
MAX_URL_LENGTH = 2048
MAX_ORDER_ID = 32
MAX_ALIASES = 10
MAX_TRANSACTIONS_PAGE = 200
ORDER_EVENTS = ("paid", "expired", "cancelled")
MAX_MERCHANT_NAME = 64
MAX_TARIFF_NAME = 64
MAX_SUBSCRIPTION_ORDER = 128
KEY_MODES = ("live", "test", "bot")

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+")
_LOOPBACK_HOSTS = {"localhost"}


# --- the mapper -------------------------------------------------------------------------------


def Refused(code: str, **params: Any) -> PydanticCustomError:
    """What a validator raises: a catalogue code and its parameters."""
    return PydanticCustomError(code, code, params)


Model = TypeVar("Model", bound=BaseModel)


def decode(model: type[Model], body: dict[str, Any], **context: Any) -> Model:
    """`body` as `model`, or the 400 of its first error (in the fields' declared order)."""
    try:
        return model.model_validate(body, context=context)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        params = dict(error.get("ctx") or {})
        if error["type"] == "missing":  # absent (pydantic's own) or null (a validator's)
            field = params.get("field") or (str(error["loc"][0]) if error["loc"] else "body")
            raise ApiError(400, "missing", field=field) from None
        raise ApiError(400, error["type"], **params) from None


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- parameters -------------------------------------------------------------------------------


def _required(value: Any, info: ValidationInfo) -> None:
    if value is None:
        raise Refused("missing", field=info.field_name)


def _amount_of(value: Any, info: ValidationInfo) -> int | None:
    if value is None:
        return None
    maximum = (info.context or {}).get("max_amount", 10**9)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise Refused("invalid_amount", field=info.field_name, max=maximum)
    return value


def _card_last4_of(value: Any, info: ValidationInfo) -> str:
    _required(value, info)
    if not is_card_last4(value):  # a str of exactly four ASCII digits, nothing around them
        raise Refused("invalid_card_last4")
    return value


def _address(value: Any) -> str | None:
    """The normalized form of an e-mail address, or None when `value` is not one."""
    if not isinstance(value, str) or len(value) > 254 or not _EMAIL.fullmatch(value.strip()):
        return None
    return normalize_gmail(value)


def _gmail_of(value: Any, info: ValidationInfo) -> str:
    _required(value, info)
    address = _address(value)
    if address is None:
        raise Refused("invalid_gmail")
    return address


def _client_user_id_of(value: Any, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_CLIENT_USER_ID:
        raise Refused("invalid_client_user_id", max=MAX_CLIENT_USER_ID)
    return value


def _client_user_data_of(value: Any, info: ValidationInfo) -> dict[str, Any] | None:
    if value is not None and (
        not isinstance(value, dict) or len(orjson.dumps(value)) > MAX_CLIENT_USER_DATA_BYTES
    ):
        raise Refused("invalid_client_user_data", max=MAX_CLIENT_USER_DATA_BYTES)
    return value


def _webhook_url_of(value: Any, info: ValidationInfo) -> str | None:
    return _checked_url(value, bool((info.context or {}).get("allow_http_loopback")))


def _notify_events_of(value: Any, info: ValidationInfo) -> tuple[str, ...] | None:
    """`notify_events`: which order events are notified, of `paid`, `expired`, `cancelled`;
    `paid` always is. Absent (or null) → None."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(v in ORDER_EVENTS for v in value):
        raise Refused("invalid_notify_events", allowed=", ".join(ORDER_EVENTS))
    return tuple(event for event in ORDER_EVENTS if event == "paid" or event in value)


def _order_id_of(value: Any, info: ValidationInfo) -> str:
    _required(value, info)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > MAX_ORDER_ID:
        raise Refused("invalid_order_id")
    return value.strip()


def _app_password_of(value: Any, info: ValidationInfo) -> str | None:
    if (info.context or {}).get("sandbox"):
        return None  # a sandbox card needs none and keeps none
    _required(value, info)
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 128:
        raise Refused("invalid_app_password")
    return value.strip()


def _aliases_of(value: Any, info: ValidationInfo) -> tuple[str, ...] | None:
    """Up to `MAX_ALIASES` addresses, normalized, each once, without the mailbox's own.
    Absent (or null) → None: the stored aliases stay."""
    if value is None or (info.context or {}).get("sandbox"):
        return None
    if not isinstance(value, list) or len(value) > MAX_ALIASES:
        raise Refused("invalid_aliases", max=MAX_ALIASES)
    result: list[str] = []
    for item in value:
        address = _address(item)
        if address is None:
            raise Refused("invalid_aliases", max=MAX_ALIASES)
        if address not in result:
            result.append(address)
    return tuple(result)


def _order_event_of(value: Any) -> str | None:
    if value is None:
        return None
    if value not in ORDER_EVENTS:
        raise Refused("invalid_notify_events", allowed=", ".join(ORDER_EVENTS))
    return value


def _checked_url(value: Any, allow_http_loopback: bool) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_LENGTH:
        raise Refused("invalid_webhook_url")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise Refused("invalid_webhook_url") from None
    if not host or any(c.isspace() for c in value):
        raise Refused("invalid_webhook_url")
    loopback_ok = allow_http_loopback and _is_loopback(host)
    if parts.scheme == "https" or (parts.scheme == "http" and loopback_ok):
        # Refused now rather than at delivery: the notifier's guard (which also vets what a
        # name resolves to) stays, but the merchant learns of the mistake at once.
        if not loopback_ok and internal_host(host) is not None:
            raise Refused("webhook_url_internal")
        return value
    raise Refused("invalid_webhook_url")


def _alone(check: Callable[..., Any], *args: Any) -> Any:
    """A parameter checked outside a body model: the same rules, the same 400."""
    try:
        return check(*args)
    except PydanticCustomError as exc:
        raise ApiError(400, exc.type, **(exc.context or {})) from None


def webhook_url(value: Any, allow_http_loopback: bool) -> str | None:
    return _alone(_checked_url, value, allow_http_loopback)


def order_event(value: Any) -> str | None:
    """An order event name (`paid`, `expired`, `cancelled`), or None when absent."""
    return _alone(_order_event_of, value)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Amount = Annotated[Any, BeforeValidator(_amount_of)]
CardLast4 = Annotated[Any, BeforeValidator(_card_last4_of)]
Gmail = Annotated[Any, BeforeValidator(_gmail_of)]


# --- commands ---------------------------------------------------------------------------------


class CreatePayment(Command):
    """Fields in the original's order of checks: amounts, client data, card, URL, events."""

    amount: Amount = None
    amount_base: Amount = None
    client_user_id: Annotated[Any, BeforeValidator(_client_user_id_of)] = None
    client_user_data: Annotated[Any, BeforeValidator(_client_user_data_of)] = None
    card_last4: CardLast4
    gmail: Gmail
    webhook_url: Annotated[Any, BeforeValidator(_webhook_url_of)] = None
    notify_events: Annotated[Any, BeforeValidator(_notify_events_of)] = None
    """None: the merchant's default (`PUT /api/settings`)."""

    @model_validator(mode="before")
    @classmethod
    def _one_amount(cls, body: Any) -> Any:
        if isinstance(body, dict):
            has_amount = body.get("amount") is not None
            has_base = body.get("amount_base") is not None
            if has_amount and has_base:
                raise Refused("amount_conflict")
            if not has_amount and not has_base:
                raise Refused("missing", field="amount")
        return body


class OrderRef(Command):
    order_id: Annotated[Any, BeforeValidator(_order_id_of)]


class AddCard(Command):
    """A live card needs its app password; a sandbox card ignores one (it is never stored)."""

    app_password: Annotated[Any, BeforeValidator(_app_password_of)] = None
    card_last4: CardLast4
    gmail: Gmail
    aliases: Annotated[Any, BeforeValidator(_aliases_of)] = None
    """Other addresses that deliver to the mailbox (normalized); None keeps the stored ones."""

    @model_validator(mode="before")
    @classmethod
    def _password_present(cls, body: Any) -> Any:
        if isinstance(body, dict) and "app_password" not in body:
            body = {**body, "app_password": None}  # validated (required unless sandbox)
        return body

    @model_validator(mode="after")
    def _without_own_address(self) -> AddCard:
        if self.aliases:
            own = tuple(a for a in self.aliases if a != self.gmail)
            object.__setattr__(self, "aliases", own)
        return self


class SandboxTransfer(Command):
    card_last4: CardLast4
    gmail: Gmail
    amount: Amount
    """So'm, as in create-payment."""

    @model_validator(mode="before")
    @classmethod
    def _amount_present(cls, body: Any) -> Any:
        if isinstance(body, dict) and body.get("amount") is None:
            raise Refused("missing", field="amount")
        return body


class Settings(Command):
    """`PUT /api/settings {webhook_url, notify_events}`: both optional; a null or empty
    `webhook_url` removes the default URL."""

    webhook_url: Annotated[Any, BeforeValidator(_webhook_url_of)] = None
    notify_events: Annotated[Any, BeforeValidator(_notify_events_of)] = None

    @model_validator(mode="after")
    def _paid_always(self) -> Settings:
        if self.notify_events is None:
            object.__setattr__(self, "notify_events", ("paid",))
        return self


# --- admin commands (`admin.py`) -------------------------------------------------------------


def _merchant_name_of(value: Any, info: ValidationInfo) -> str:
    _required(value, info)
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_MERCHANT_NAME:
        raise Refused("invalid_name", max=MAX_MERCHANT_NAME)
    return value.strip()


def _tariff_name_of(value: Any, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_TARIFF_NAME:
        raise Refused("invalid_tariff")
    return value.strip()


def _required_tariff_name_of(value: Any, info: ValidationInfo) -> str:
    _required(value, info)
    return _tariff_name_of(value, info)  # type: ignore[return-value]


def _invite_code_of(value: Any, info: ValidationInfo) -> str | None:
    """Any string is looked at (a malformed one is simply no valid code: 400 `invalid_invite`
    when redeemed); anything else is not a code."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Refused("invalid_invite")
    return value.strip()


def _key_mode_of(value: Any, info: ValidationInfo) -> str:
    _required(value, info)
    if value not in KEY_MODES:
        raise Refused("invalid_key_mode", allowed=", ".join(KEY_MODES))
    return value


def _subscription_order_of(value: Any, info: ValidationInfo) -> str:
    _required(value, info)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_SUBSCRIPTION_ORDER:
        raise Refused("invalid_subscription_order", max=MAX_SUBSCRIPTION_ORDER)
    return value.strip()


class CreateMerchant(Command):
    """`POST /admin/merchants`: a live merchant, on `tariff` (None: the default terms), after
    redeeming `invite_code` when one is given."""

    name: Annotated[Any, BeforeValidator(_merchant_name_of)]
    tariff: Annotated[Any, BeforeValidator(_tariff_name_of)] = None
    invite_code: Annotated[Any, BeforeValidator(_invite_code_of)] = None


class RotateKey(Command):
    mode: Annotated[Any, BeforeValidator(_key_mode_of)]


class ExtendSubscription(Command):
    """`POST /admin/merchants/{id}/subscription`: one period of `tariff`, bought with the paid
    order `order_id` (applied once per order id)."""

    tariff: Annotated[Any, BeforeValidator(_required_tariff_name_of)]
    order_id: Annotated[Any, BeforeValidator(_subscription_order_of)]


# --- decoding ---------------------------------------------------------------------------------


def decode_object(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json")
    return body


def create_payment(
    body: dict[str, Any], *, max_amount: int, allow_http_loopback: bool
) -> CreatePayment:
    return decode(
        CreatePayment, body, max_amount=max_amount, allow_http_loopback=allow_http_loopback
    )


def order_id(body: dict[str, Any]) -> str:
    return decode(OrderRef, body).order_id


def add_card(body: dict[str, Any], *, sandbox: bool = False) -> AddCard:
    return decode(AddCard, body, sandbox=sandbox)


def sandbox_transfer(body: dict[str, Any], *, max_amount: int) -> SandboxTransfer:
    return decode(SandboxTransfer, body, max_amount=max_amount)


def settings(body: dict[str, Any], *, allow_http_loopback: bool) -> Settings:
    return decode(Settings, body, allow_http_loopback=allow_http_loopback)


# --- the ledger's query -----------------------------------------------------------------------


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


# --- admin bodies -----------------------------------------------------------------------------


def create_merchant(body: dict[str, Any]) -> CreateMerchant:
    return decode(CreateMerchant, body)


def rotate_key(body: dict[str, Any]) -> RotateKey:
    return decode(RotateKey, body)


def extend_subscription(body: dict[str, Any]) -> ExtendSubscription:
    return decode(ExtendSubscription, body)
