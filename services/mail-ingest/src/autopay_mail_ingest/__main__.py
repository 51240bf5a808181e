"""`python -m autopay_mail_ingest`: run the service in the foreground."""

from autopay_mail_ingest.bootstrap import build_app
from autopay_mail_ingest.settings import IngestSettings
from autopay_runtime.health import serve
from autopay_runtime.logging import configure_logging


def main() -> None:
    settings = IngestSettings()
    configure_logging("mail-ingest", settings.log_level, settings.log_json)
    serve(build_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
