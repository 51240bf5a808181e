"""Prometheus metrics of mail-ingest (process-wide; no per-mailbox labels).

Label values come only from fixed sets (`domain.REJECTION_LABELS`, `STATES`), never from mail,
a mailbox id or an address: what is known per mailbox is exported as counts of mailboxes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from autopay_mail_ingest.domain import REJECTION_LABELS

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
UNREADABLE_MAILBOXES = Gauge(
    "autopay_ingest_unreadable_mailboxes",
    "Mailboxes whose app password no key in AUTOPAY_SECRET_KEYS opens (status config_error); "
    "every replica reads the whole config feed, so each reports all of them",
)

STATES = ("connecting", "connected", "down", "auth_failed", "throttled")
"""A watcher's states (`config_error` mailboxes have no watcher: `UNREADABLE_MAILBOXES`)."""

SILENCE_MIN_INTERVALS = 5
"""The usual interval is known once this many intervals between bank mails were seen."""
_EWMA_WEIGHT = 0.2


@dataclass
class _Rhythm:
    last_mail: float | None = None
    """Epoch seconds of the latest bank mail (credit or rejected notification) published."""
    usual_interval_s: float = 0.0
    intervals: int = 0

    def mail(self, at: float) -> None:
        if self.last_mail is not None and at > self.last_mail:
            interval = at - self.last_mail
            if self.intervals == 0:
                self.usual_interval_s = interval
            else:
                self.usual_interval_s += _EWMA_WEIGHT * (interval - self.usual_interval_s)
            self.intervals += 1
        if self.last_mail is None or at > self.last_mail:
            self.last_mail = at

    def silent(self, now: float, factor: float, min_quiet_s: float) -> bool:
        if self.last_mail is None or self.intervals < SILENCE_MIN_INTERVALS:
            return False
        return now - self.last_mail > max(factor * self.usual_interval_s, min_quiet_s)


class MailboxCollector(Collector):
    """The state and mail rhythm of each mailbox this replica watches, exported as counts:
    `autopay_ingest_mailboxes{state}` and `autopay_ingest_silent_mailboxes`. Each mailbox is
    watched by one replica, so `sum` over replicas counts each once."""

    def __init__(self, clock=time.time, factor: float = 10.0, min_quiet_s: float = 3600.0) -> None:
        self.clock = clock
        self.factor = factor
        """A connected mailbox is silent when no bank mail reached it for `factor` times its
        usual interval between bank mails ..."""
        self.min_quiet_s = min_quiet_s
        """... and for at least this long (a mailbox that gets a mail a minute is not silent
        after ten quiet minutes at night)."""
        self._states: dict[str, str] = {}
        self._rhythms: dict[str, _Rhythm] = {}

    def set_state(self, mailbox_id: str, state: str) -> None:
        self._states[mailbox_id] = state

    def mail(self, mailbox_id: str, at: datetime) -> None:
        self._rhythms.setdefault(mailbox_id, _Rhythm()).mail(at.timestamp())

    def forget(self, mailbox_id: str) -> None:
        """The watcher ended (stopped, lease lost): another replica or none reports it now.
        Its rhythm stays: it is learnt again only if this replica watches it again."""
        self._states.pop(mailbox_id, None)

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(STATES, 0)
        for state in self._states.values():
            found[state if state in found else "down"] += 1
        return found

    def silent(self) -> int:
        now = self.clock()
        return sum(
            1
            for mailbox_id, state in self._states.items()
            if state == "connected"
            and (rhythm := self._rhythms.get(mailbox_id)) is not None
            and rhythm.silent(now, self.factor, self.min_quiet_s)
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily(
            "autopay_ingest_mailboxes", "Mailboxes this replica watches, by state", labels=["state"]
        )
        for state, count in self.counts().items():
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily(
            "autopay_ingest_silent_mailboxes",
            "Connected mailboxes without bank mail for far longer than their usual interval "
            "(AUTOPAY_SILENCE_FACTOR times it, at least AUTOPAY_SILENCE_MIN_SECONDS)",
            value=self.silent(),
        )


MAILBOXES = MailboxCollector()
REGISTRY.register(MAILBOXES)

# Every label value exists from the start, so rates and alerts see a 0 before the first event.
for _reason in REJECTION_LABELS:
    REJECTED.labels(reason=_reason)
