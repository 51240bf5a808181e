"""`python -m autopay_gateway`: the public HTTP API, and the admin API on its own listener.

One process, one app, one lifespan: uvicorn serves it on the public socket (`http_host`:
`http_port`) and, when the admin API is on (`admin_token` and `admin_port` set), on the admin
socket (`admin_host`:`admin_port`) too. The app tells them apart by the port a request came in
on (`admin.AdminAccess`), so `/admin/*` answers only on the admin socket.
"""

import gc
import socket

import structlog
import uvicorn
from prometheus_client import start_http_server

from autopay_gateway.bootstrap import build_app
from autopay_gateway.settings import GatewaySettings
from autopay_runtime.logging import configure_logging
from autopay_runtime.tracing import configure_tracing

log = structlog.get_logger("autopay_gateway")


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket as uvicorn binds its own (uvicorn listens on it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def event_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - platform without uvloop
        return "asyncio"
    return "uvloop"


def serve(app, sockets: list[socket.socket]) -> None:
    """Run the app on every socket in one uvicorn server (one event loop, one lifespan), with
    the settings of `autopay_runtime.health.serve`."""
    config = uvicorn.Config(
        app,
        loop=event_loop(),
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run(sockets=sockets)


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    configure_tracing("gateway", settings.trace_file)
    app = build_app(settings)
    if settings.metrics_port:
        # Its own port, in its own thread: the public port serves the API and health only, so
        # the Internet never reads the metrics and a scrape never waits behind API requests.
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    sockets = [listening_socket(settings.http_host, settings.http_port)]
    if settings.admin_enabled:
        sockets.append(listening_socket(settings.admin_host, settings.admin_port))
    elif settings.admin_port or settings.admin_token.get_secret_value():
        log.warning("admin API off: it needs both AUTOPAY_ADMIN_TOKEN and AUTOPAY_ADMIN_PORT")
    # Everything imported and built so far lives as long as the process: keep it out of the
    # cyclic collector's full passes, which otherwise walk it all and stall requests.
    gc.collect()
    gc.freeze()
    serve(app, sockets)


if __name__ == "__main__":
    main()
