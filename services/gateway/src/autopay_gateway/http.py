"""HTTP plumbing: JSON responses, error rendering, exception handlers, metrics middleware."""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autopay_gateway import metrics
from autopay_gateway.messages import DEFAULT_BOT_HANDLE, ApiError, negotiate, render

log = structlog.get_logger("autopay_gateway")

JSON = "application/json"


class JsonResponse(Response):
    media_type = JSON

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


MAX_BODY_BYTES = 64 * 1024


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests the same for `Idempotency-Key`: the same method, path and JSON
    body (key order and spacing ignored; a body that is not JSON, byte for byte)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past `MAX_BODY_BYTES`: by its Content-Length before
    anything is read, and while reading when it has none (chunked), so a large body is never
    buffered whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def error_body(request: Request, err: ApiError) -> bytes:
    language = negotiate(request.headers.get("accept-language"))
    bot = getattr(request.app.state, "bot_handle", DEFAULT_BOT_HANDLE)
    return orjson.dumps({"detail": render(err.code, language, bot=bot, **err.params)})


def error_response(request: Request, err: ApiError) -> Response:
    return Response(error_body(request, err), err.status, headers=err.headers, media_type=JSON)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    field = str(errors[0]["loc"][-1]) if errors and errors[0].get("loc") else "?"
    return error_response(request, ApiError(400, "invalid_param", field=field))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    if code is None:
        return JsonResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
    return error_response(request, ApiError(exc.status_code, code, headers=exc.headers))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", path=request.url.path, exc_info=exc)
    return error_response(request, ApiError(500, "internal"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


# --- metrics --------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts requests and observes latency by route template (pure ASGI, cheap)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in metrics.METHODS else "other"
            counter, latency = _series(method, route, status)
            counter.inc()
            latency.observe(time.perf_counter() - started)


@functools.lru_cache(maxsize=4096)
def _series(method: str, route: str, status: int) -> tuple[Any, Any]:
    """The labelled children, looked up once per (method, route template, status)."""
    return (
        metrics.REQUESTS.labels(method, route, str(status)),
        metrics.REQUEST_SECONDS.labels(method, route),
    )
