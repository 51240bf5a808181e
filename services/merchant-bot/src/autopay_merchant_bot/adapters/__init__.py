"""Adapters: the gateway over HTTP, Telegram through aiogram."""
