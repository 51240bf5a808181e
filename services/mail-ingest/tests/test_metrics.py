"""mail-ingest's per-mailbox knowledge leaves the process only as counts of mailboxes."""

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from autopay_mail_ingest.domain import REJECTION_LABELS
from autopay_mail_ingest.metrics import STATES, MailboxCollector

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now.timestamp()


def scrape(collector: MailboxCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_mailboxes_are_counted_by_state_without_their_ids():
    collector = MailboxCollector()
    assert collector.counts() == dict.fromkeys(STATES, 0)  # every state from the start
    collector.set_state("mbx-secret-1", "connected")
    collector.set_state("mbx-secret-2", "auth_failed")
    collector.set_state("mbx-secret-3", "connecting")
    collector.set_state("mbx-secret-3", "connected")
    assert collector.counts() == {**dict.fromkeys(STATES, 0), "connected": 2, "auth_failed": 1}
    collector.forget("mbx-secret-2")  # its watcher ended: another replica reports it
    text = scrape(collector)
    assert 'autopay_ingest_mailboxes{state="auth_failed"} 0.0' in text
    assert 'autopay_ingest_mailboxes{state="connected"} 2.0' in text
    assert "mbx-secret" not in text


def test_a_mailbox_is_silent_only_far_beyond_its_usual_interval():
    clock = Clock()
    collector = MailboxCollector(clock=clock, factor=10, min_quiet_s=3600)
    collector.set_state("busy", "connected")
    collector.set_state("new", "connected")
    for i in range(6):  # a bank mail every 20 minutes
        collector.mail("busy", START + timedelta(minutes=20 * i))
    collector.mail("new", START)  # one mail: no usual interval yet
    last = START + timedelta(minutes=100)
    clock.now = last + timedelta(minutes=199)  # under 10 x 20 min
    assert collector.silent() == 0
    clock.now = last + timedelta(minutes=201)
    assert collector.silent() == 1
    assert "autopay_ingest_silent_mailboxes 1.0" in scrape(collector)
    collector.set_state("busy", "down")  # a mailbox that is down is another alert's business
    assert collector.silent() == 0


def test_the_silence_floor_and_out_of_order_mail():
    clock = Clock()
    collector = MailboxCollector(clock=clock, factor=10, min_quiet_s=3600)
    collector.set_state("m", "connected")
    for i in range(6):  # a mail a minute
        collector.mail("m", START + timedelta(minutes=i))
    collector.mail("m", START + timedelta(minutes=2))  # an older mail read late
    clock.now = START + timedelta(minutes=5 + 30)  # 30 x the interval, under the floor
    assert collector.silent() == 0
    clock.now = START + timedelta(minutes=5 + 61)
    assert collector.silent() == 1


def test_the_process_collector_and_rejection_reasons_are_exported_from_the_start():
    sample = REGISTRY.get_sample_value
    assert REGISTRY.get_sample_value("autopay_ingest_silent_mailboxes") is not None
    for state in STATES:
        assert sample("autopay_ingest_mailboxes", {"state": state}) is not None
    for reason in REJECTION_LABELS:
        assert sample("autopay_ingest_rejected_total", {"reason": reason}) is not None
