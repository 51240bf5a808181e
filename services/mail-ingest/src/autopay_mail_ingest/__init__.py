"""Reads bank notifications from Gmail over IMAP and publishes credit events."""
