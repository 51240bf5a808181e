"""Merchant bot settings, read from `AUTOPAY_*` environment variables."""

from typing import Literal

from pydantic import Field, SecretStr

from autopay_runtime.settings import ServiceSettings

Language = Literal["uz", "ru", "en"]


class MerchantBotSettings(ServiceSettings):
    http_port: int = Field(8085, description="`/healthz`, `/readyz` and `/metrics`")

    bot_token: SecretStr = Field(SecretStr(""), description="The bot's token from @BotFather")
    telegram_api_url: str = Field(
        "https://api.telegram.org", description="The Bot API server (a local one in the dev stack)"
    )
    gateway_url: str = Field(
        "http://gateway:8080", description="The gateway's public API, as the bot reaches it"
    )
    public_api_url: str = Field(
        "", description="The API address merchants are shown in examples (default: gateway_url)"
    )
    admin_url: str = Field("http://gateway:8081", description="The gateway's admin API")
    admin_token: SecretStr = Field(SecretStr(""), description="Bearer token of the admin API")

    registration: Literal["invite", "open"] = Field(
        "invite", description="How merchants join: with an operator's invite code, or freely"
    )
    trial_tariff: str = Field("Trial", description="The tariff a new merchant starts on")
    default_language: Language = "uz"

    operator_api_key: SecretStr = Field(
        SecretStr(""), description="The operator's own merchant key: subscriptions are its orders"
    )
    operator_card_last4: str = Field("", description="The operator's card that is paid")
    operator_gmail: str = Field("", description="The mailbox of the operator's card")

    durable: str = Field("merchant-bot", description="Prefix of the bot's durable consumers")
    consumer_lookback_s: float = Field(
        3600.0, ge=0, description="A new durable consumer starts this far back"
    )
    webhook_failures_alert: int = Field(
        3, ge=1, description="Consecutive failed webhook attempts that make an alert"
    )
    mailbox_down_grace_s: float = Field(
        180.0, ge=0, description="A mailbox down this long is told (shorter drops are not)"
    )
    expiry_warning_days: int = Field(3, ge=1, description="Warn this many days before expiry")
    sweep_interval_s: float = Field(
        3600.0, gt=0, description="How often subscriptions are checked for expiry"
    )
    candidate_orders: int = Field(5, ge=1, le=10, description="Buttons under an unmatched credit")
    candidate_window_s: float = Field(
        24 * 3600.0, gt=0, description="How old an order may be to be offered for a credit"
    )
    journal_sweep_s: float = Field(
        2.0, gt=0, description="How often chat links left uncopied (NATS away) are copied again"
    )
    no_chat_ttl_s: float = Field(
        5.0, ge=0, description="How long a merchant found with no linked chat is not asked again"
    )
    global_sends_per_s: float = Field(25.0, gt=0, description="Telegram's bot-wide send rate")
    chat_sends_per_s: float = Field(1.0, gt=0, description="Telegram's per-chat send rate")
    send_attempts: int = Field(5, ge=1, description="Tries of one message before it is dropped")
    request_timeout_s: float = Field(15.0, gt=0, description="Timeout of a gateway call")
    polling_timeout_s: int = Field(10, ge=0, description="getUpdates long-poll seconds")

    @property
    def shown_api_url(self) -> str:
        return (self.public_api_url or self.gateway_url).rstrip("/")
