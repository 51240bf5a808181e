"""The OpenAPI document: FastAPI's routes, with the bodies of `schemas.py` and every answer.

The routes read their bodies themselves, so FastAPI cannot see them; `describe` adds, per
operation, the request body, the 200 body and each error status the operation can answer with
(always `{"detail": "..."}`), the `x-api-key` header and the ledger's query parameters.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from autopay_gateway import schemas as s

Route = tuple[type[BaseModel] | None, type[BaseModel], tuple[int, ...]]

_COMMON = (401, 429, 500)
_POST = (400, 413, *_COMMON)

ROUTES: dict[tuple[str, str], Route] = {
    ("post", "/api/create-payment"): (
        s.CreatePaymentRequest,
        s.CreatePaymentResponse,
        (*_POST, 403, 409, 503),
    ),
    ("post", "/api/check-payment"): (s.OrderIdRequest, s.OrderResponse, (*_POST, 404)),
    ("post", "/api/cancel-payment"): (
        s.OrderIdRequest,
        s.CancelResponse,
        (*_POST, 404, 409, 503),
    ),
    ("get", "/api/my-cards"): (None, s.CardsResponse, _COMMON),
    ("get", "/api/subscription"): (None, s.SubscriptionResponse, _COMMON),
    ("post", "/api/cards"): (s.AddCardRequest, s.AddCardResponse, (*_POST, 409, 503)),
    ("delete", "/api/cards/{card_id}"): (None, s.RemoveCardResponse, (400, 404, 503, *_COMMON)),
    ("post", "/api/sandbox/transfer"): (
        s.SandboxTransferRequest,
        s.SandboxTransferResponse,
        (*_POST, 403, 503),
    ),
    ("get", "/api/transactions"): (None, s.TransactionsResponse, (400, *_COMMON)),
    ("get", "/api/transactions/{transaction_id}"): (
        None,
        s.TransactionResponse,
        (404, *_COMMON),
    ),
    ("post", "/api/transactions/{transaction_id}/match"): (
        s.OrderIdRequest,
        s.MatchResponse,
        (*_POST, 404, 409),
    ),
    ("post", "/api/transactions/{transaction_id}/dismiss"): (
        None,
        s.DismissResponse,
        (*_POST, 404, 409, 503),
    ),
    ("get", "/api/settings"): (None, s.SettingsResponse, _COMMON),
    ("put", "/api/settings"): (s.SettingsRequest, s.SettingsResponse, (400, 413, *_COMMON)),
    ("get", "/api/orders/{order_id}/deliveries"): (
        None,
        s.DeliveriesResponse,
        (404, *_COMMON),
    ),
    ("post", "/api/orders/{order_id}/redeliver"): (
        s.RedeliverRequest,
        s.RedeliverResponse,
        (*_POST, 404, 409),
    ),
    ("post", "/api/webhooks/test"): (s.TestWebhookRequest, s.TestWebhookResponse, _POST),
    ("get", "/api/webhook-secret"): (None, s.SecretResponse, (404, *_COMMON)),
    ("post", "/api/webhook-secret/rotate"): (None, s.RotatedSecretResponse, _POST),
}

OPTIONAL_BODY = {
    ("post", "/api/transactions/{transaction_id}/dismiss"),
    ("post", "/api/orders/{order_id}/redeliver"),
    ("post", "/api/webhooks/test"),
    ("post", "/api/webhook-secret/rotate"),
}

TRANSACTION_QUERY = [
    {"name": "status", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "since", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "string"}},
    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
]

API_KEY = {"name": "x-api-key", "in": "header", "required": True, "schema": {"type": "string"}}

REASONS = {
    400: "Invalid parameter, or the card is not connected",
    401: "Missing or wrong API key",
    403: "No active subscription or payment limit reached (or a live key on the sandbox)",
    404: "Not found, or not the caller's",
    409: "The state does not allow it (amount reserved, already paid, ...)",
    413: "Body over 64 KiB",
    429: "Rate limited (see Retry-After)",
    500: "Internal error",
    503: "A dependency is unavailable; nothing was changed, or the call is safe to retry",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def describe(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    models: set[type[BaseModel]] = {s.Error}
    for request, response, _ in ROUTES.values():
        models.add(response)
        if request is not None:
            models.add(request)
    for model in models:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in body.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = body
    for (method, path), (request, response, errors) in ROUTES.items():
        operation = schema["paths"][path][method]
        params = [p for p in operation.get("parameters", []) if p.get("in") == "path"]
        operation["parameters"] = [API_KEY, *params]
        if path == "/api/transactions":
            operation["parameters"] += TRANSACTION_QUERY
        if request is not None:
            operation["requestBody"] = {
                "required": (method, path) not in OPTIONAL_BODY,
                "content": _json(request),
            }
        operation["responses"] = {"200": {"description": "OK", "content": _json(response)}} | {
            str(code): {"description": REASONS[code], "content": _json(s.Error)}
            for code in sorted(set(errors))
        }
    return schema


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
