"""`python -m autopay_mail_ingest`: run the service in the foreground."""

import asyncio.sslproto
import importlib.util

from autopay_mail_ingest.bootstrap import build_app
from autopay_mail_ingest.settings import IngestSettings
from autopay_runtime.health import serve
from autopay_runtime.logging import configure_logging
from autopay_runtime.tracing import configure_tracing


def small_tls_buffers() -> None:
    """Without uvloop, stdlib asyncio gives every TLS connection a 256 KiB read buffer (about
    300 KB RSS per IDLE mailbox); 32 KiB is plenty for IMAP (research note imap.md §2.3)."""
    if importlib.util.find_spec("uvloop") is None:
        asyncio.sslproto.SSLProtocol.max_size = 32 * 1024


def main() -> None:
    settings = IngestSettings()
    configure_logging("mail-ingest", settings.log_level, settings.log_json)
    configure_tracing("mail-ingest", settings.trace_file)
    small_tls_buffers()
    serve(build_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
