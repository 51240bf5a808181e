"""One payment's trace through the dev stack, written by every service to the file
`autopay dev up --trace-file` names (OTLP JSON lines).

The credit's trace starts at the mail that carried it: mail-ingest's span, the matcher's
decision and the notifier's webhook are one trace id, carried in each event's `traceparent`
header (FastStream's telemetry middleware, and nats-py's own path in the matcher). The order's
create request is the gateway's own trace, which the decision links to. The matcher's log line
for the decision names the same trace id."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from autopay_testing.waiting import eventually

pytestmark = pytest.mark.e2e

SERVICES = {"gateway", "mail-ingest", "matcher", "notifier"}


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("traces") / "spans.jsonl"


@pytest.fixture(scope="module")
def stack_args(trace_file) -> list[str]:
    return ["--trace-file", str(trace_file)]


def spans(path: Path) -> list[dict]:
    """Every span in the file, each with its resource's `service.name` as `service`."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        for resource in json.loads(line)["resourceSpans"]:
            attrs = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}
            service = attrs["service.name"]["stringValue"]
            for scope in resource["scopeSpans"]:
                found += [{**span, "service": service} for span in scope["spans"]]
    return found


def attribute(span: dict, key: str) -> object:
    for item in span.get("attributes", []):
        if item["key"] == key:
            return next(iter(item["value"].values()))
    return None


def test_one_payment_is_one_trace_from_mail_to_webhook(stack, receiver, trace_file):
    body = {
        "card_last4": stack.info["card"]["card_last4"],
        "gmail": stack.info["card"]["gmail"],
        "amount": 70_000 + random.randint(1, 99),
        "webhook_url": receiver.url,
    }
    created = stack.post("/api/create-payment", body)
    assert created.status_code == 200, created.text
    order_id = created.json()["order_id"]
    stack.send_credit(body["amount"])
    [request] = eventually(lambda: receiver.for_order(order_id), 40, "the webhook")
    Webhook(stack.info["webhook_secret"]).verify(request["body"], request["headers"])

    def the_webhooks_trace() -> list[dict] | None:
        by_trace = defaultdict(list)
        for span in spans(trace_file):
            by_trace[span["traceId"]].append(span)
        for trace in by_trace.values():
            services = {span["service"] for span in trace}
            webhook = [s for s in trace if s["service"] == "notifier" and s["kind"] == 3]
            ids = {span["spanId"] for span in trace}
            whole = all(s["parentSpanId"] in ids for s in trace if s.get("parentSpanId"))
            if {"mail-ingest", "matcher", "notifier"} <= services and webhook and whole:
                return trace  # every span written (a parent ends after its children)
        return None

    trace = eventually(the_webhooks_trace, 20, "one trace mail-ingest -> matcher -> notifier")
    everything = spans(trace_file)
    assert {span["service"] for span in everything} >= SERVICES

    # The trace is one tree whose one root is the mail.
    roots = [span for span in trace if not span.get("parentSpanId")]
    assert [root["name"] for root in roots] == ["mail process"], roots
    assert {len(span["traceId"]) for span in trace} == {32}  # hex, as OTLP JSON has it
    [decision] = [s for s in trace if attribute(s, "autopay.credit_id")]
    assert decision["service"] == "matcher" and decision["kind"] == 5  # a consumer span
    credit_id = attribute(decision, "autopay.credit_id")

    # The create request is the gateway's own trace (a server span for the endpoint), and the
    # decision that paid the order links to it.
    creates = [
        s
        for s in everything
        if s["service"] == "gateway" and s["name"] == "POST /api/create-payment"
    ]
    assert len(creates) == 1 and creates[0]["kind"] == 2, creates
    links = [(link["traceId"], link["spanId"]) for link in decision.get("links", [])]
    assert links == [(creates[0]["traceId"], creates[0]["spanId"])]

    # The matcher's log line for the decision carries the trace id.
    trace_id = trace[0]["traceId"]
    lines = (stack.state_dir / "logs" / "matcher.log").read_text().splitlines()
    decided = [json.loads(line) for line in lines if credit_id in line and "{" in line]
    assert any(d.get("trace_id") == trace_id for d in decided), decided[-3:]

    # No secret rides along: the API key and the webhook secret are in no span.
    text = trace_file.read_text()
    assert stack.info["api_key"] not in text
    assert stack.info["webhook_secret"] not in text
