"""Delivers signed webhooks (Standard Webhooks) with retries."""
