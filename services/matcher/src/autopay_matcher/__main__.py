"""`python -m autopay_matcher`: the matcher with /healthz, /readyz and /metrics."""

from autopay_matcher.bootstrap import build_app
from autopay_matcher.settings import MatcherSettings
from autopay_runtime.health import serve
from autopay_runtime.logging import configure_logging
from autopay_runtime.tracing import configure_tracing


def main() -> None:
    settings = MatcherSettings()
    configure_logging("matcher", settings.log_level, settings.log_json)
    configure_tracing("matcher", settings.trace_file)
    serve(build_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
