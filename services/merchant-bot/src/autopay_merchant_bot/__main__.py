"""`python -m autopay_merchant_bot`: the merchant's Telegram bot."""

from autopay_merchant_bot.bootstrap import build_app
from autopay_merchant_bot.settings import MerchantBotSettings
from autopay_runtime.health import serve
from autopay_runtime.logging import configure_logging
from autopay_runtime.tracing import configure_tracing


def main() -> None:
    settings = MerchantBotSettings()
    configure_logging("merchant-bot", settings.log_level, settings.log_json)
    configure_tracing("merchant-bot", settings.trace_file)
    serve(build_app(settings), settings.http_host, settings.http_port)


if __name__ == "__main__":
    main()
