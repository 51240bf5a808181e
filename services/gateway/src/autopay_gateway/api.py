"""The public API routes: decode, call the use case, encode. Nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from autopay_gateway import requests as body
from autopay_gateway.application import Caller, Gateway
from autopay_gateway.clock import utcnow
from autopay_gateway.http import JSON, JsonResponse, error_body, read_body, request_fingerprint
from autopay_gateway.messages import ApiError
from autopay_gateway.payments import Idempotent
from autopay_store.idempotency import ClaimLost, StoredResponse
from autopay_store.ledger import STATUSES

router = APIRouter(prefix="/api")

Action = Callable[[Gateway, Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def authenticated(request: Request) -> Caller:
    """The dependency of every route: the key (401; wrong keys throttled per client address),
    then the key's rate limit (429), before anything else is looked at."""
    access = _gateway(request).access
    address = request.client.host if request.client is not None else "unknown"
    caller = await access.authenticate(request.headers.get("x-api-key"), address)
    await access.throttle(caller)
    return caller


Authenticated = Annotated[Caller, Depends(authenticated)]


Guard = Callable[[Gateway, Caller], None]

_IDEMPOTENT: ContextVar[Idempotent | None] = ContextVar("idempotent", default=None)
"""The `Idempotency-Key` claim of the call in hand, for an action that creates an order."""


class _ClaimLost(ApiError):
    """The call's claim of its key was answered or taken meanwhile: its record is not ours."""

    def __init__(self) -> None:
        super().__init__(409, "idempotency_in_progress")


async def _post(
    request: Request,
    caller: Caller,
    action: Action,
    guard: Guard | None = None,
    bodyless: bool = False,
) -> Response:
    """Run a POST, honouring `Idempotency-Key` (replay the first answer, refuse a changed body).
    `guard` is the call's 403 check, made before the body is looked at (the order of checks).
    A `bodyless` call takes no parameters: an empty body is `{}`."""
    gateway = _gateway(request)
    if guard is not None:
        guard(gateway, caller)
    raw = await read_body(request)
    if bodyless and not raw.strip():
        raw = b"{}"
    key = request.headers.get("idempotency-key")
    if key is None:
        return JsonResponse(await action(gateway, caller, body.decode_object(raw)))
    if not 1 <= len(key) <= 255:
        raise ApiError(400, "invalid_idempotency_key")
    # The sandbox has its own keys' space: a test call can never replay into a live one.
    merchant_id = caller.merchant.merchant_id + (":test" if caller.merchant.test_mode else "")
    fp = request_fingerprint("POST", request.url.path, raw)
    claim = await gateway.idempotency.claim(merchant_id, key, fp)
    if claim.outcome == "mismatch":
        raise ApiError(409, "idempotency_mismatch")
    if claim.outcome == "pending":
        raise ApiError(409, "idempotency_in_progress")
    if claim.response is not None:
        return Response(
            claim.response.body,
            claim.response.status,
            media_type=JSON,
            headers={"Idempotent-Replayed": "true"},
        )

    async def bind(order_id: str) -> None:
        try:
            await gateway.idempotency.bind(merchant_id, key, fp, order_id)
        except ClaimLost:
            raise _ClaimLost() from None

    scope = _IDEMPOTENT.set(Idempotent(bind, claim.order_id))
    try:
        stored = StoredResponse(
            200, JsonResponse(None).render(await action(gateway, caller, body.decode_object(raw)))
        )
    except _ClaimLost:
        raise
    except ApiError as err:
        if err.status >= 500 or err.status == 429:
            await gateway.idempotency.reopen(merchant_id, key, fp)
            raise
        stored = StoredResponse(err.status, error_body(request, err))
    except BaseException:
        await gateway.idempotency.reopen(merchant_id, key, fp)
        raise
    finally:
        _IDEMPOTENT.reset(scope)
    await gateway.idempotency.complete(merchant_id, key, fp, stored)
    return Response(stored.body, stored.status, media_type=JSON)


async def _read(request: Request, caller: Caller, action: Action) -> Response:
    """Run a POST that changes nothing (check-payment): every call answers with the current
    state, so an `Idempotency-Key` is not honoured there (a replay would freeze a stale status)."""
    data = body.decode_object(await read_body(request))
    return JsonResponse(await action(_gateway(request), caller, data))


def _subscribed(gateway: Gateway, caller: Caller) -> None:
    gateway.access.require_subscription(caller.merchant, utcnow())


def _sandbox_key(gateway: Gateway, caller: Caller) -> None:
    if not caller.merchant.test_mode:
        raise ApiError(403, "sandbox_only")


async def _create_payment(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
    cmd = body.create_payment(
        data,
        max_amount=gateway.settings.max_amount,
        allow_http_loopback=gateway.settings.allow_http_loopback_webhooks,
    )
    return await gateway.payments.create_payment(caller.merchant, cmd, utcnow(), _IDEMPOTENT.get())


async def _check_payment(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
    return await gateway.payments.check_payment(caller.merchant, body.order_id(data))


async def _cancel_payment(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
    return await gateway.payments.cancel_payment(caller.merchant, body.order_id(data), utcnow())


async def _add_card(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
    cmd = body.add_card(data, sandbox=caller.merchant.test_mode)
    return await gateway.cards.add_card(caller.merchant, cmd, utcnow())


async def _sandbox_transfer(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
    cmd = body.sandbox_transfer(data, max_amount=gateway.settings.max_amount)
    return await gateway.sandbox.transfer(caller.merchant, cmd, utcnow())


@router.post("/create-payment")
async def create_payment(request: Request, caller: Authenticated) -> Response:
    """Create a payment: `amount` (or `amount_base`), `card_last4`, `gmail`, ..."""
    return await _post(request, caller, _create_payment, _subscribed)


@router.post("/check-payment")
async def check_payment(request: Request, caller: Authenticated) -> Response:
    return await _read(request, caller, _check_payment)


@router.post("/cancel-payment")
async def cancel_payment(request: Request, caller: Authenticated) -> Response:
    return await _post(request, caller, _cancel_payment)


@router.get("/my-cards")
async def my_cards(request: Request, caller: Authenticated) -> Response:
    return JsonResponse(await _gateway(request).cards.my_cards(caller.merchant))


@router.get("/subscription")
async def subscription(request: Request, caller: Authenticated) -> Response:
    return JsonResponse(await _gateway(request).account.subscription(caller.merchant, utcnow()))


@router.post("/cards")
async def add_card(request: Request, caller: Authenticated) -> Response:
    return await _post(request, caller, _add_card)


@router.delete("/cards/{card_id}")
async def remove_card(request: Request, caller: Authenticated, card_id: int) -> Response:
    return JsonResponse(
        await _gateway(request).cards.remove_card(caller.merchant, card_id, utcnow())
    )


@router.post("/sandbox/transfer")
async def sandbox_transfer(request: Request, caller: Authenticated) -> Response:
    """Test keys only: a simulated bank transfer `{card_last4, gmail, amount}` to a sandbox card."""
    return await _post(request, caller, _sandbox_transfer, _sandbox_key)


# --- transactions ledger ------------------------------------------------------------------


@router.get("/transactions")
async def transactions(request: Request, caller: Authenticated) -> Response:
    """The ledger, newest first: `?status=&since=&limit=&cursor=`."""
    query = body.transaction_query(request.query_params, STATUSES)
    ledger = _gateway(request).transactions
    return JsonResponse(
        await ledger.list(
            caller.merchant,
            status=query.status,
            since=query.since,
            limit=query.limit,
            cursor=query.cursor,
        )
    )


@router.get("/transactions/{transaction_id}")
async def transaction(request: Request, caller: Authenticated, transaction_id: str) -> Response:
    return JsonResponse(await _gateway(request).transactions.get(caller.merchant, transaction_id))


@router.post("/transactions/{transaction_id}/match")
async def match_transaction(
    request: Request, caller: Authenticated, transaction_id: str
) -> Response:
    """Pay a waiting or expired order with this unmatched, ambiguous or late credit."""

    async def action(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
        order_id = body.order_id(data)
        return await gateway.transactions.match(
            caller.merchant, caller.actor, transaction_id, order_id, utcnow()
        )

    return await _post(request, caller, action)


@router.post("/transactions/{transaction_id}/dismiss")
async def dismiss_transaction(
    request: Request, caller: Authenticated, transaction_id: str
) -> Response:
    """Mark a credit that belongs to no order as handled."""

    async def action(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
        return await gateway.transactions.dismiss(
            caller.merchant, caller.actor, transaction_id, utcnow()
        )

    return await _post(request, caller, action, bodyless=True)


# --- settings -------------------------------------------------------------------------------


@router.get("/settings")
async def get_settings(request: Request, caller: Authenticated) -> Response:
    return JsonResponse(await _gateway(request).account.get_settings(caller.merchant))


@router.put("/settings")
async def put_settings(request: Request, caller: Authenticated) -> Response:
    """`{webhook_url, notify_events}`: the defaults of payments created without them."""
    gateway = _gateway(request)
    cmd = body.settings(
        body.decode_object(await read_body(request)),
        allow_http_loopback=gateway.settings.allow_http_loopback_webhooks,
    )
    return JsonResponse(await gateway.account.put_settings(caller.merchant, cmd))


# --- webhook tools ----------------------------------------------------------------------------


@router.get("/orders/{order_id}/deliveries")
async def deliveries(request: Request, caller: Authenticated, order_id: str) -> Response:
    """Every webhook of the order, each attempt with its time, status or error and latency."""
    gateway = _gateway(request)
    await gateway.payments.check_payment(caller.merchant, order_id)  # 404 unless the caller's order
    return JsonResponse(await gateway.webhooks.log(caller.merchant, order_id))


@router.post("/orders/{order_id}/redeliver")
async def redeliver(request: Request, caller: Authenticated, order_id: str) -> Response:
    """Send the order's webhook again with the same `webhook-id` (`{"event": "paid"}` picks
    one of its events; all of them by default)."""

    async def action(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
        await gateway.payments.check_payment(caller.merchant, order_id)
        event = body.order_event(data.get("event"))
        return await gateway.webhooks.redeliver(caller.merchant, order_id, event, utcnow())

    return await _post(request, caller, action, bodyless=True)


@router.post("/webhooks/test")
async def test_webhook(request: Request, caller: Authenticated) -> Response:
    """A signed test event to `{"url"}` or to the default webhook URL of /api/settings."""

    async def action(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
        url = body.webhook_url(data.get("url"), gateway.settings.allow_http_loopback_webhooks)
        return await gateway.webhooks.send_test(caller.merchant, url, utcnow())

    return await _post(request, caller, action, bodyless=True)


@router.get("/webhook-secret")
async def webhook_secret(request: Request, caller: Authenticated) -> Response:
    return JsonResponse(await _gateway(request).webhooks.secret(caller.merchant, utcnow()))


@router.post("/webhook-secret/rotate")
async def rotate_webhook_secret(request: Request, caller: Authenticated) -> Response:
    """A new signing secret; webhooks carry signatures by both for 24 h."""

    async def action(gateway: Gateway, caller: Caller, data: dict[str, Any]) -> dict:
        return await gateway.webhooks.rotate_secret(caller.merchant, utcnow())

    return await _post(request, caller, action, bodyless=True)
