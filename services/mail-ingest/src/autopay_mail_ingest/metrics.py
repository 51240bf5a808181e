"""Prometheus metrics of mail-ingest (process-wide; no per-mailbox labels).

Label values come only from fixed sets (`domain.REJECTION_LABELS`), never from mail.
"""

from prometheus_client import Counter, Gauge

MAILS_FETCHED = Counter(
    "autopay_ingest_mails_fetched_total", "Candidate mails read whole over IMAP"
)
PERSONAL_SKIPPED = Counter(
    "autopay_ingest_personal_skipped_total",
    "New mails passed unread because their headers show no bank sender (personal mail)",
)
UNSCREENED = Counter(
    "autopay_ingest_unscreened_total",
    "New mails passed because the server's reply held no header fields for them",
)
TOO_LARGE = Counter(
    "autopay_ingest_too_large_total",
    "Candidate mails over the size cap, refused from their headers without reading the body",
)
CREDITS = Counter("autopay_ingest_credits_total", "credit.received events published")
REJECTED = Counter(
    "autopay_ingest_rejected_total",
    "credit.rejected events published, by refusal code or notification kind",
    ["reason"],
)
DUPLICATES = Counter("autopay_ingest_duplicates_total", "Mails dropped as already ingested")
RECONNECTS = Counter("autopay_ingest_reconnects_total", "IMAP sessions lost and retried")
AUTH_FAILURES = Counter("autopay_ingest_auth_failures_total", "IMAP logins refused")
IDLE_MAILBOXES = Gauge("autopay_ingest_idle_mailboxes", "Mailboxes currently in IDLE")
WATCHED_MAILBOXES = Gauge("autopay_ingest_watched_mailboxes", "Mailboxes with a watcher")
PUBLISH_RETRIES = Counter(
    "autopay_ingest_publish_retries_total", "Event publishes JetStream did not acknowledge, retried"
)
LEASES_HELD = Gauge("autopay_ingest_leases_held", "Mailbox leases this replica holds")
LEASES_LOST = Counter(
    "autopay_ingest_leases_lost_total", "Mailbox leases lost (not renewed in time) by this replica"
)
