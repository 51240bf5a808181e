"""The admin API routes (`/admin/*`, for the merchant bot and operators): decode, call the use
case (`operators.py`), encode. Nothing else.

Reached only through the admin listener: the same process and app as the public API, but a
socket of its own (`admin_host`:`admin_port`, `__main__` serves both), and only with
`Authorization: Bearer <admin_token>`. `AdminGate` checks both before routing, by the port the
request came in on (ASGI `scope["server"]`, the listening socket's address: no header can fake
it): on any other listener `/admin/*` is a 404 as if it did not exist (no 405, no 401 tells it
does), and a missing or wrong token on the admin listener is 401. The routes depend on the same
check again, so no path spelling can route past the gate. The routes are not in the public
OpenAPI document.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from autopay_gateway import requests as body
from autopay_gateway.application import Gateway
from autopay_gateway.clock import utcnow
from autopay_gateway.http import JsonResponse, error_response, read_body
from autopay_gateway.messages import ApiError
from autopay_gateway.operators import Operators

PREFIX = "/admin"


class AdminAccess:
    """Who may use the admin API: requests on the admin port carrying the admin token. A port
    of 0 or an empty token turns the admin API off (every `/admin/*` is 404)."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port if token else 0
        self._token = token.encode()

    @staticmethod
    def covers(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    def refusal(self, scope: Scope) -> ApiError | None:
        """None when the request may reach an admin route, else the error to answer with."""
        server = scope.get("server")
        if not self.port or server is None or server[1] != self.port:
            return ApiError(404, "not_found")
        if not self._bearer_matches(scope):
            return ApiError(401, "admin_unauthorized", headers={"WWW-Authenticate": "Bearer"})
        return None

    def _bearer_matches(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(token.strip(), self._token)


class AdminGate:
    """Answers `/admin/*` requests that `AdminAccess` refuses before any routing (pure ASGI)."""

    def __init__(self, app: ASGIApp, access: AdminAccess) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.access.covers(scope.get("path", "")):
            refused = self.access.refusal(scope)
            if refused is not None:
                response = error_response(Request(scope, receive), refused)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def admin_only(request: Request) -> None:
    refused = request.app.state.admin_access.refusal(request.scope)
    if refused is not None:
        raise refused


router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(admin_only)])


def _operators(request: Request) -> Operators:
    gateway: Gateway = request.app.state.gateway
    return gateway.operators


async def _json(request: Request) -> dict[str, Any]:
    return body.decode_object(await read_body(request))


@router.post("/merchants")
async def create_merchant(request: Request) -> Response:
    """`{name, tariff, invite_code}` → `{merchant_id, api_key, webhook_secret, bot_key}`."""
    cmd = body.create_merchant(await _json(request))
    return JsonResponse(await _operators(request).create_merchant(cmd, utcnow()))


@router.get("/merchants/{merchant_id}")
async def merchant(request: Request, merchant_id: str) -> Response:
    return JsonResponse(await _operators(request).merchant(merchant_id, utcnow()))


@router.post("/merchants/{merchant_id}/keys")
async def rotate_key(request: Request, merchant_id: str) -> Response:
    """`{mode: live|test|bot}` → a new key of that mode; the previous one stops working."""
    cmd = body.rotate_key(await _json(request))
    return JsonResponse(await _operators(request).rotate_key(merchant_id, cmd.mode))


@router.post("/merchants/{merchant_id}/subscription")
async def extend_subscription(request: Request, merchant_id: str) -> Response:
    """`{tariff, order_id}`: one period of the tariff, bought with that paid order (once)."""
    cmd = body.extend_subscription(await _json(request))
    return JsonResponse(await _operators(request).extend(merchant_id, cmd, utcnow()))


@router.get("/tariffs")
async def tariffs(request: Request) -> Response:
    return JsonResponse(await _operators(request).list_tariffs())


@router.get("/mailboxes/{mailbox_id}")
async def mailbox(request: Request, mailbox_id: str) -> Response:
    return JsonResponse(await _operators(request).mailbox(mailbox_id))
