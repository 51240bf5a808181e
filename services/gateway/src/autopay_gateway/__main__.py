"""`python -m autopay_gateway`: the public HTTP API."""

import gc

from prometheus_client import start_http_server

from autopay_gateway.bootstrap import build_app
from autopay_gateway.settings import GatewaySettings
from autopay_runtime.health import serve
from autopay_runtime.logging import configure_logging


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    app = build_app(settings)
    if settings.metrics_port:
        # Its own port, in its own thread: the public port serves the API and health only, so
        # the Internet never reads the metrics and a scrape never waits behind API requests.
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    # Everything imported and built so far lives as long as the process: keep it out of the
    # cyclic collector's full passes, which otherwise walk it all and stall requests.
    gc.collect()
    gc.freeze()
    serve(app, settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
