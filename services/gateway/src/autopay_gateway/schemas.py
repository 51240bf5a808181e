"""The OpenAPI description of the API: request and response bodies with the original API's
examples.

The routes decode bodies by hand (`requests.py`: every mistake a 400 with the original's kind
of message, never a 422), so these models only describe what goes over the wire; `openapi.py`
attaches them to the routes. A test fuzzes the API from this description (no 500, every answer
as described).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CARD = {"card_last4": "6412", "gmail": "karta@gmail.com"}
TIME = "2026-12-03 15:04:05"
Time = str
EventName = Literal["paid", "expired", "cancelled"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class Error(BaseModel):
    detail: str = Field(examples=["Faol obuna yo'q! @Autopaycardbot da obuna oling."])


# --- requests ---------------------------------------------------------------------------------


class CreatePaymentRequest(_Body):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "amount": 50037,
                    **CARD,
                    "client_user_id": "123456789",
                    "client_user_data": {"plan": "premium"},
                    "webhook_url": "https://botingiz.uz/webhook",
                }
            ]
        },
    )
    amount: int | None = Field(None, ge=1, description="So'm; or `amount_base`")
    amount_base: int | None = Field(None, ge=1, description="The server adds a free tail 1..99")
    card_last4: str = Field(pattern=r"^[0-9]{4}$")
    gmail: str
    client_user_id: str | int | None = None
    client_user_data: dict[str, Any] | None = None
    webhook_url: str | None = None
    notify_events: list[EventName] | None = None


class OrderIdRequest(_Body):
    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{"order_id": "10001"}]}
    )
    order_id: str | int


class AddCardRequest(_Body):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{**CARD, "app_password": "abcd efgh ijkl mnop"}]},
    )
    card_last4: str = Field(pattern=r"^[0-9]{4}$")
    gmail: str
    app_password: str | None = Field(None, description="Required of a live key")
    aliases: list[str] | None = None


class SandboxTransferRequest(_Body):
    model_config = ConfigDict(
        extra="allow", json_schema_extra={"examples": [{**CARD, "amount": 50037}]}
    )
    card_last4: str = Field(pattern=r"^[0-9]{4}$")
    gmail: str
    amount: int = Field(ge=1)


class SettingsRequest(_Body):
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"webhook_url": "https://botingiz.uz/webhook", "notify_events": ["paid"]}]
        },
    )
    webhook_url: str | None = None
    notify_events: list[EventName] | None = None


class TestWebhookRequest(_Body):
    url: str | None = None


class RedeliverRequest(_Body):
    event: EventName | None = None


# --- responses --------------------------------------------------------------------------------


class CreatePaymentResponse(BaseModel):
    success: bool = True
    order_id: str = Field(examples=["10001"])
    amount: int | None = Field(None, description="With `amount_base`: the amount to pay")


class OrderResponse(BaseModel):
    order_id: str
    status: Literal["waiting", "paid", "expired", "cancelled"]
    amount: int
    card_last4: str
    gmail: str
    client_user_id: str | None
    client_user_data: dict[str, Any] | None
    paid_at: Time | None = Field(examples=[TIME])


class CancelResponse(BaseModel):
    success: bool
    order_id: str
    status: Literal["cancelled"]


class CardView(BaseModel):
    id: int
    card_last4: str
    gmail: str
    status: str | None = None
    last_mail_at: Time | None = None


class CardsResponse(BaseModel):
    cards: list[CardView]


class AddCardResponse(BaseModel):
    success: bool
    id: int
    card_last4: str
    gmail: str


class RemoveCardResponse(BaseModel):
    success: bool
    id: int


class SubscriptionResponse(BaseModel):
    active: bool
    tariff_name: str
    expires_at: Time
    payments_used: int
    max_payments: int


class SandboxTransferResponse(BaseModel):
    success: bool
    test: bool
    transfer_id: str
    amount: int
    card_last4: str
    gmail: str


class TransactionView(BaseModel):
    id: str
    status: Literal["matched", "unmatched", "ambiguous", "late", "duplicate", "rejected"]
    reason: str | None
    amount: int | float | None
    card_last4: str | None
    gmail: str | None
    occurred_at: Time | None
    received_at: Time | None
    order_id: str | None
    candidates: list[str]
    late: bool
    manual: bool
    matched_at: Time | None
    dismissed_at: Time | None


class TransactionsResponse(BaseModel):
    transactions: list[TransactionView]
    next_cursor: str | None


class TransactionResponse(BaseModel):
    transaction: TransactionView


class MatchResponse(BaseModel):
    success: bool
    transaction: TransactionView
    order_id: str
    status: Literal["paid"]
    amount_differs: bool
    difference: int | float | None


class DismissResponse(BaseModel):
    success: bool
    transaction: TransactionView


class SettingsResponse(BaseModel):
    webhook_url: str | None
    notify_events: list[EventName]
    success: bool | None = None


class AttemptView(BaseModel):
    attempt: int | None
    at: Time | None
    status_code: int | None
    error: str | None
    latency_ms: float | None
    outcome: str | None
    next_attempt_at: Time | None


class DeliveryView(BaseModel):
    webhook_id: str
    event: str
    url: str | None
    state: str | None
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: Time | None
    next_attempt_at: Time | None
    log: list[AttemptView]


class DeliveriesResponse(BaseModel):
    order_id: str
    deliveries: list[DeliveryView]


class RedeliverResponse(BaseModel):
    success: bool
    order_id: str
    webhook_ids: list[str]


class TestWebhookResponse(BaseModel):
    success: bool
    webhook_id: str
    url: str


class SecretResponse(BaseModel):
    webhook_secret: str


class RotatedSecretResponse(BaseModel):
    success: bool
    webhook_secret: str
    previous_valid_until: Time
