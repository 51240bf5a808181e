"""`python -m autopay_notifier`: run the notifier with /healthz, /readyz and /metrics."""

from autopay_notifier.bootstrap import build_app
from autopay_notifier.settings import NotifierSettings
from autopay_runtime.health import serve
from autopay_runtime.logging import configure_logging
from autopay_runtime.tracing import configure_tracing


def main() -> None:
    settings = NotifierSettings()
    configure_logging("notifier", settings.log_level, settings.log_json)
    configure_tracing("notifier", settings.trace_file)
    serve(build_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
