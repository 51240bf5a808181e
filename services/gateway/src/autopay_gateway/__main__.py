"""`python -m autopay_gateway`: the public HTTP API."""

from autopay_gateway.bootstrap import build_app
from autopay_gateway.settings import GatewaySettings
from autopay_runtime.health import serve
from autopay_runtime.logging import configure_logging


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_json)
    serve(build_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
