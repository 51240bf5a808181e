"""The gateway, as the bot calls it: the public API with a merchant's bot key (or the
operator's own key, for subscription orders), and the admin API with its bearer token.

Every failure is a `GatewayRefused` carrying the status and the gateway's `detail` (already in
the merchant's language: requests carry `Accept-Language`), or `GatewayUnavailable` when the
gateway could not be reached or answered 5xx/429."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class GatewayRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class GatewayUnavailable(Exception):
    """The gateway did not answer, or answered 5xx / 429: worth retrying later."""


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail) if detail else response.reason_phrase


async def _call(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], **kw: Any
) -> Any:
    try:
        response = await client.request(method, url, headers=headers, **kw)
    except httpx.HTTPError as exc:
        raise GatewayUnavailable(f"{method} {url.split('?')[0]}: {type(exc).__name__}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise GatewayUnavailable(f"{method} {url}: {response.status_code} {_detail(response)}")
    if response.status_code >= 400:
        raise GatewayRefused(response.status_code, _detail(response))
    return response.json()


@dataclass
class MerchantApi:
    """The public API as one merchant (its bot key) in one language."""

    client: httpx.AsyncClient
    base_url: str
    api_key: str
    language: str = "uz"

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"x-api-key": self.api_key, "accept-language": self.language}
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        return headers

    async def _get(self, path: str) -> Any:
        return await _call(self.client, "GET", self.base_url + path, self._headers())

    async def _post(self, path: str, body: dict | None = None, key: str | None = None) -> Any:
        return await _call(
            self.client, "POST", self.base_url + path, self._headers(key), json=body or {}
        )

    async def my_cards(self) -> list[dict]:
        return (await self._get("/api/my-cards"))["cards"]

    async def add_card(self, card_last4: str, gmail: str, app_password: str) -> dict:
        body = {"card_last4": card_last4, "gmail": gmail, "app_password": app_password}
        return await self._post("/api/cards", body)

    async def remove_card(self, card_id: int) -> dict:
        return await _call(
            self.client, "DELETE", f"{self.base_url}/api/cards/{card_id}", self._headers()
        )

    async def subscription(self) -> dict:
        return await self._get("/api/subscription")

    async def transaction(self, transaction_id: str) -> dict:
        return (await self._get(f"/api/transactions/{transaction_id}"))["transaction"]

    async def match(self, transaction_id: str, order_id: str) -> dict:
        return await self._post(
            f"/api/transactions/{transaction_id}/match",
            {"order_id": order_id},
            key=f"merchant-bot:match:{transaction_id}:{order_id}",
        )

    async def dismiss(self, transaction_id: str) -> dict:
        return await self._post(
            f"/api/transactions/{transaction_id}/dismiss",
            key=f"merchant-bot:dismiss:{transaction_id}",
        )

    async def rotate_webhook_secret(self) -> dict:
        return await self._post("/api/webhook-secret/rotate")

    async def create_payment(self, body: dict, idempotency_key: str) -> dict:
        return await self._post("/api/create-payment", body, key=idempotency_key)

    async def check_payment(self, order_id: str) -> dict:
        return await self._post("/api/check-payment", {"order_id": order_id})


@dataclass
class AdminApi:
    """The gateway's admin API (its own port, a bearer token)."""

    client: httpx.AsyncClient
    base_url: str
    token: str

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    async def _get(self, path: str) -> Any:
        return await _call(self.client, "GET", self.base_url + path, self._headers())

    async def _post(self, path: str, body: dict) -> Any:
        return await _call(self.client, "POST", self.base_url + path, self._headers(), json=body)

    async def create_merchant(self, name: str, tariff: str | None, invite_code: str | None) -> dict:
        body = {"name": name, "tariff": tariff, "invite_code": invite_code}
        return await self._post("/admin/merchants", body)

    async def rotate_key(self, merchant_id: str, mode: str) -> str:
        found = await self._post(f"/admin/merchants/{merchant_id}/keys", {"mode": mode})
        return found["api_key"]

    async def merchant(self, merchant_id: str) -> dict:
        return await self._get(f"/admin/merchants/{merchant_id}")

    async def extend_subscription(self, merchant_id: str, tariff: str, order_id: str) -> dict:
        body = {"tariff": tariff, "order_id": order_id}
        return await self._post(f"/admin/merchants/{merchant_id}/subscription", body)

    async def tariffs(self) -> list[dict]:
        return (await self._get("/admin/tariffs"))["tariffs"]

    async def mailbox_owner(self, mailbox_id: str) -> str | None:
        try:
            return (await self._get(f"/admin/mailboxes/{mailbox_id}"))["merchant_id"]
        except GatewayRefused as exc:
            if exc.status == 404:
                return None
            raise
