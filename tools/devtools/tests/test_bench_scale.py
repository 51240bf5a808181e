"""`make bench BENCH=scale` at tiny sizes: one and two matcher and notifier processes on real
servers, its keys reported, and every run's outcomes checked. No figure is asserted (speed is
never tested), only that each is there and positive."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from autopay_devtools.bench import matcher, notifier, scale

KEYS = {
    "matcher_scale_2x",
    "matcher_credits_per_s_1proc",
    "matcher_credits_per_s_2proc",
    "notifier_scale_2x",
    "notifier_webhooks_per_s_1proc",
    "notifier_webhooks_per_s_2proc",
}
CREDITS = 100
WEBHOOKS = 50


def test_scale_bench_reports_its_keys_and_checks_every_run(monkeypatch) -> None:
    monkeypatch.setattr(scale, "ROUNDS", 1)
    monkeypatch.setattr(scale, "MATCHER_ORDERS", 200)
    monkeypatch.setattr(scale, "MATCHER_CREDITS", CREDITS)
    monkeypatch.setattr(scale, "NOTIFIER_ORDERS", WEBHOOKS)
    matcher_runs: list[tuple[int, str, Counter]] = []
    checked_webhooks: list[int] = []
    measure, verify = matcher.measure, notifier._verify

    async def recorded_measure(nats_url, redis_url, plan, processes=1):
        rate, outcomes = await measure(nats_url, redis_url, plan, processes)
        matcher_runs.append((processes, plan.ns.root, outcomes))
        return rate, outcomes

    def recorded_verify(rows, events, secrets):
        verify(rows, events, secrets)
        checked_webhooks.append(len(rows))

    monkeypatch.setattr(matcher, "measure", recorded_measure)
    monkeypatch.setattr(notifier, "_verify", recorded_verify)

    figures = scale.run()

    assert set(figures) == KEYS
    assert all(value > 0 for value in figures.values())
    assert [processes for processes, _, _ in matcher_runs] == [1, 2]
    assert len({ns for _, ns, _ in matcher_runs}) == 2, "each run has a namespace of its own"
    unmatched = int(CREDITS * matcher.UNMATCHED_SHARE)
    for _, _, outcomes in matcher_runs:
        assert outcomes["credit.received"] == CREDITS
        assert outcomes["credit.matched"] == outcomes["order.paid"] == CREDITS - unmatched
        assert outcomes["credit.unmatched"] == unmatched
    assert checked_webhooks == [WEBHOOKS, WEBHOOKS]


def test_a_webhook_delivered_twice_fails_the_run() -> None:
    merchants = ["m1"]
    events = notifier._orders(merchants, [9], None, count=2)
    now = str(int(datetime.now(UTC).timestamp()))
    rows = [[9, 0.0, e.event_id, now, "v1,x", "{}"] for e in [*events, events[0]]]
    with pytest.raises(RuntimeError, match="delivered twice"):
        notifier._verify(rows, events, {"m1": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
