"""Every `autopay_*` metric the dashboard and the alert rules name is exported by a running
service: one payment through the dev stack, then a scrape of each service's `/metrics`
(issue #11). The exporters' metrics (`jetstream_*`, `gnatsd_*`, `redis_*`) are not the
services' and are not looked for here."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
WORKERS = ("mail-ingest", "matcher", "notifier", "merchant-bot")
PREFIXES = {
    "gateway": "autopay_gateway_",
    "mail-ingest": "autopay_ingest_",
    "matcher": "autopay_matcher_",
    "notifier": "autopay_notifier_",
    "merchant-bot": "autopay_bot_",
}


def observability():
    """deploy/tests/test_observability.py, for its readers of the dashboard and the rules."""
    path = REPO / "deploy" / "tests" / "test_observability.py"
    spec = importlib.util.spec_from_file_location("autopay_observability_checks", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def referenced_metrics() -> set[str]:
    checks = observability()
    exprs = [rule["expr"] for rule in checks.rules()] + [e for _, e in checks.panel_targets()]
    names = set().union(*(checks.metric_names(expr) for expr in exprs))
    return {name for name in names if name.startswith("autopay_")}


def scrape(port: int) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    return response.text


def sample_names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def pay_once(stack, receiver) -> str:
    """One payment from create-payment to its webhook, so every service has done its part."""
    amount = 61_000 + random.randint(1, 99)
    body = {
        "card_last4": stack.info["card"]["card_last4"],
        "gmail": stack.info["card"]["gmail"],
        "amount": amount,
        "webhook_url": receiver.url,
    }
    created = stack.post("/api/create-payment", body)
    assert created.status_code == 200, created.text
    order_id = created.json()["order_id"]
    stack.send_credit(amount)
    eventually(lambda: receiver.for_order(order_id), 40, f"webhook for {order_id}")
    return order_id


def test_every_metric_the_dashboard_and_alerts_name_is_scraped_from_the_stack(stack, receiver):
    order_id = pay_once(stack, receiver)
    run = stack.run_file()
    ports = {"gateway": run["gateway_metrics_port"]} | {w: run[f"{w}_port"] for w in WORKERS}
    texts = {service: scrape(port) for service, port in ports.items()}
    names = {service: sample_names(text) for service, text in texts.items()}

    for service, prefix in PREFIXES.items():
        own = {n for n in names[service] if n.startswith("autopay_")}
        assert own, f"{service} exports no AutoPay metric"
        assert all(n.startswith(prefix) for n in own), (service, sorted(own)[:5])

    wanted = referenced_metrics()
    assert len(wanted) >= 20, sorted(wanted)
    exported = set().union(*names.values())
    assert wanted <= exported, f"named but not exported: {sorted(wanted - exported)}"

    # Labels come from fixed sets: no label of any AutoPay series is this payment's order,
    # merchant or mailbox.
    private = {order_id, str(stack.info["merchant_id"]), stack.info["card"]["gmail"]}
    for service, text in texts.items():
        values = {
            value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("autopay_")
            for label, value in sample.labels.items()
            if label not in ("le", "quantile")  # a histogram's bucket bounds
        }
        assert values, service
        assert not values & private, f"{service} labels a series with {values & private}"
        assert not any("@" in value for value in values), service


def test_the_payment_shows_in_the_figures_the_dashboard_reads(stack, receiver):
    """The counters the payment panels read moved: created, paid, and its confirmation."""
    run = stack.run_file()

    def value(port: int, name: str, labels: dict[str, str] | None = None) -> float:
        for family in text_string_to_metric_families(scrape(port)):
            for sample in family.samples:
                if sample.name == name and (labels is None or sample.labels == labels):
                    return sample.value
        raise AssertionError(f"{name}{labels or ''} not exported")

    gateway, matcher = run["gateway_metrics_port"], run["matcher_port"]
    created = value(gateway, "autopay_gateway_orders_created_total", {"mode": "live"})
    paid = value(matcher, "autopay_matcher_orders_paid_total", {"late": "false"})
    confirmed = value(matcher, "autopay_matcher_confirmation_seconds_count")
    pay_once(stack, receiver)
    assert value(gateway, "autopay_gateway_orders_created_total", {"mode": "live"}) == created + 1

    def matcher_counted() -> tuple[float, float]:
        # The matcher counts right after its events are stored, which may be a moment after
        # the webhook they caused: wait for it, then compare exactly.
        now = (
            value(matcher, "autopay_matcher_orders_paid_total", {"late": "false"}),
            value(matcher, "autopay_matcher_confirmation_seconds_count"),
        )
        return now if now != (paid, confirmed) else ()

    assert eventually(matcher_counted, 10, "the matcher's count") == (paid + 1, confirmed + 1)
    assert value(run["mail-ingest_port"], "autopay_ingest_mailboxes", {"state": "connected"}) >= 1
