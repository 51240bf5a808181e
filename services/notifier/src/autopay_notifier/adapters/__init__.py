"""Adapters: the outbound HTTP client that sends webhooks to merchants' endpoints."""
