"""The merchant bot: AutoPay for merchants in Telegram."""
