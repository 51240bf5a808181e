from __future__ import annotations

import os
import secrets
import socket

from pydantic import Field

from autopay_runtime.settings import ServiceSettings


def default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class IngestSettings(ServiceSettings):
    """mail-ingest configuration (`AUTOPAY_*` environment variables)."""

    http_port: int = 8082

    imap_connect_timeout_s: float = 15.0
    imap_command_timeout_s: float = 30.0
    reidle_interval_s: float = 540.0
    """DONE + fetch + IDLE at least this often (Gmail drops IDLE near 30 min; NATs sooner)."""
    connect_concurrency: int = 50
    """At most this many mailboxes connect / log in at the same time (connect storms)."""

    lease_seconds: float = 15.0
    """A replica that stops renewing loses its mailboxes after this long (renewed every third)."""
    lease_slack: int = 1
    """A replica holds at most ceil(mailboxes / live replicas) + this many leases."""
    replica_id: str = Field(default_factory=default_replica_id)
    """Names this process in the lease keys; unique per process (hostname-pid-random)."""

    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    auth_retry_s: float = 600.0
    """After AUTHENTICATIONFAILED, retry this rarely (the password must be re-entered)."""
    throttled_retry_s: float = 300.0
    publish_backoff_max_s: float = 5.0
    """Retry an unacknowledged event publish (NATS down) at least this often."""

    initial_lookback_s: float = 3600.0
    """A mailbox without a cursor (or with a new UIDVALIDITY) is read back this far."""
    max_message_bytes: int = Field(default=256 * 1024, ge=1024)
    """A candidate mail over this size is recorded `rejected: too_large` from its headers and
    never read; this is also the most one read returns."""
    screen_chunk: int = Field(default=50, ge=1, le=200)
    """New mails screened (headers only) per FETCH. aioimaplib reads a reply recursively, one
    frame per line, so a reply of several hundred mails would overflow its stack."""
    fetch_chunk: int = Field(default=10, ge=1, le=100)
    """Candidates read whole per FETCH: one mailbox holds at most this × `max_message_bytes`
    of mail in memory at a time."""
    silence_factor: float = Field(default=10.0, gt=1)
    """`autopay_ingest_silent_mailboxes` counts a connected mailbox once no bank mail reached
    it for this many times its usual interval between bank mails ..."""
    silence_min_seconds: float = Field(default=3600.0, ge=0)
    """... and for at least this long."""
    evidence_retention_days: int = 30
    dedup_ttl_days: int = 30
    trusted_receiver: str = "mx.google.com"
    client_name: str = "autopay-mail-ingest"
    sandbox_durable: str = "mail-ingest-sandbox"
    """The durable consumer of sandbox transfer requests, shared by every replica."""

    @property
    def evidence_ttl_s(self) -> int:
        return self.evidence_retention_days * 86400

    @property
    def dedup_ttl_s(self) -> int:
        return self.dedup_ttl_days * 86400
