"""`/healthz`, `/readyz` and Prometheus `/metrics` for worker services (FastStream apps).

`/healthz` answers while the process runs; `/readyz` answers 200 only when every readiness
check passes (broker connected, Redis reachable, streams present...), else 503 with the failing
check names.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadinessCheck = tuple[str, Callable[[], Awaitable[bool]]]


def health_routes(checks: Sequence[ReadinessCheck]) -> list[tuple[str, Any]]:
    @get(include_in_schema=False)
    async def healthz(scope: Any) -> AsgiResponse:
        return AsgiResponse(b'{"status":"ok"}', 200, headers={"content-type": "application/json"})

    @get(include_in_schema=False)
    async def readyz(scope: Any) -> AsgiResponse:
        failing = await failing_checks(checks)
        if failing:
            body = json.dumps({"status": "not ready", "failing": failing}).encode()
            return AsgiResponse(body, 503, headers={"content-type": "application/json"})
        return AsgiResponse(
            b'{"status":"ready"}', 200, headers={"content-type": "application/json"}
        )

    @get(include_in_schema=False)
    async def metrics(scope: Any) -> AsgiResponse:
        return AsgiResponse(generate_latest(), 200, headers={"content-type": CONTENT_TYPE_LATEST})

    return [("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)]


async def failing_checks(checks: Sequence[ReadinessCheck], timeout_s: float = 2.0) -> list[str]:
    """Names of the checks that fail, raise or take longer than `timeout_s`, run concurrently."""

    async def passes(check: Callable[[], Awaitable[bool]]) -> bool:
        try:
            return bool(await asyncio.wait_for(check(), timeout=timeout_s))
        except Exception:
            return False

    results = await asyncio.gather(*(passes(fn) for _, fn in checks))
    return [name for (name, _), ok in zip(checks, results, strict=True) if not ok]


def serve(app: AsgiFastStream | Any, host: str, port: int) -> None:
    """Run an ASGI app (a worker's AsgiFastStream or the gateway's FastAPI) in the foreground."""
    loop = "uvloop"
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - platform without uvloop
        loop = "asyncio"
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=loop,
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
