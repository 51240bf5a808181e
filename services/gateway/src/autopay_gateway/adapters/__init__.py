"""Adapters: Redis, NATS and IMAP behind small classes the application functions call."""
