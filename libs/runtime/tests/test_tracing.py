"""Tracing: the OTLP JSON trace file, which roots are kept, what a client span may record, the
`traceparent` that nats-py publishes carry (over a real NATS), trace ids in log lines, and
`configure_tracing` from the environment (in a child process: a process has one provider)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from faststream.nats import NatsBroker
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from autopay_contracts import OrderCreated, OrderPaid
from autopay_runtime import tracing
from autopay_runtime.logging import add_trace_ids
from autopay_runtime.publishing import EventPublisher
from autopay_testing.builders import order

ORDER = order("10001")
NOW = ORDER.created_at


@pytest.fixture
def provider(tmp_path, monkeypatch):
    """A provider of the test's own writing to a trace file, made the one `tracing` uses
    (the process-wide one is never set by these tests)."""
    provider = TracerProvider(sampler=tracing.work_sampler())
    provider.add_span_processor(SimpleSpanProcessor(tracing.OtlpJsonFileExporter(tmp_path / "t")))
    monkeypatch.setattr(tracing, "_provider", provider)
    yield provider
    provider.shutdown()


def written(tmp_path) -> list[dict]:
    lines = (tmp_path / "t").read_text().splitlines()
    return [
        span
        for line in lines
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


def test_the_trace_file_is_otlp_json_with_hex_ids(provider, tmp_path):
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("mail process", kind=SpanKind.CONSUMER) as parent,
        tracer.start_as_current_span("EVALSHA", kind=SpanKind.CLIENT) as child,
    ):
        child.set_attribute("db.system", "redis")
    spans = {span["name"]: span for span in written(tmp_path)}
    assert set(spans) == {"mail process", "EVALSHA"}
    root, client = spans["mail process"], spans["EVALSHA"]
    ctx = parent.get_span_context()
    assert root["traceId"] == format(ctx.trace_id, "032x")
    assert root["spanId"] == format(ctx.span_id, "016x")
    assert client["parentSpanId"] == root["spanId"] and client["traceId"] == root["traceId"]
    assert (root["kind"], client["kind"]) == (5, 3)  # enums as integers
    assert int(client["endTimeUnixNano"]) >= int(client["startTimeUnixNano"]) > 0
    assert client["attributes"] == [{"key": "db.system", "value": {"stringValue": "redis"}}]


def test_roots_are_kept_only_where_work_starts(provider, tmp_path):
    tracer = provider.get_tracer("test")
    for kind in (SpanKind.CLIENT, SpanKind.INTERNAL):  # a background loop's Redis call
        with tracer.start_as_current_span(f"root {kind.name}", kind=kind) as span:
            assert not span.is_recording()
    for kind in (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER):
        with (
            tracer.start_as_current_span(f"root {kind.name}", kind=kind),
            tracer.start_as_current_span("child", kind=SpanKind.CLIENT) as child,
        ):
            assert child.is_recording()  # a client call inside work is kept
    names = sorted(span["name"] for span in written(tmp_path))
    assert names == ["child"] * 3 + ["root CONSUMER", "root PRODUCER", "root SERVER"]


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("https://api.telegram.org/bot123456:AAE-secret_x/getUpdates?offset=5", "bot[redacted]"),
        ("https://user:pass@shop.example/hook?token=s3cret#frag", "https://shop.example/hook"),
    ],
)
def test_a_client_span_records_no_credentials(url, recorded):
    safe = tracing.traced_url(url)
    assert recorded in safe
    assert not any(secret in safe for secret in ("secret", "s3cret", "pass", "offset", "frag"))


def test_log_lines_name_the_span_they_are_logged_in(provider):
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with provider.get_tracer("test").start_as_current_span("s", kind=SpanKind.SERVER) as span:
        line = add_trace_ids(None, "info", {"event": "x"})
    ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")


async def test_publish_many_carries_each_events_trace(
    provider, nats_url, nats_client, namespace, streams
):
    """The raw nats-py path: event i carries parents[i]'s trace, else the current span's;
    with tracing off, no header is added."""
    tracer = provider.get_tracer("test")
    first = tracer.start_span("credit a", kind=SpanKind.CONSUMER)
    broker = NatsBroker(nats_url)
    publisher = EventPublisher(broker, namespace, [OrderCreated, OrderPaid])
    await broker.start()
    try:
        js = nats_client.jetstream()
        sub = await js.subscribe(namespace.order("*", "*"), ordered_consumer=True)
        created, paid = (
            OrderCreated(order=ORDER),
            OrderPaid(order=ORDER, credit_id="c", paid_at=NOW),
        )
        with tracer.start_as_current_span("current", kind=SpanKind.SERVER) as current:
            await publisher.publish_many([created, paid], [tracing.context_of(first), None])
        msgs = [await sub.next_msg(timeout=5) for _ in range(2)]
        parents = [tracing.extract(m.headers) for m in msgs]
        ids = [trace.get_current_span(p).get_span_context().span_id for p in parents]
        assert ids == [first.get_span_context().span_id, current.get_span_context().span_id]

        tracing._provider = None  # off: nothing is injected
        later = OrderPaid(
            order=ORDER.model_copy(update={"order_id": "10002"}), credit_id="d", paid_at=NOW
        )
        await publisher.publish_many([later])
        msg = await sub.next_msg(timeout=5)
        assert "traceparent" not in (msg.headers or {})
        assert tracing.extract(msg.headers) == Context()
    finally:
        first.end()
        await broker.stop()


CONFIGURE = """
import json, sys
from autopay_runtime import tracing
on = tracing.configure_tracing("matcher", sys.argv[1] or None)
if on:
    with tracing.tracer("t").start_as_current_span("work", kind=tracing.SpanKind.CONSUMER):
        pass
    tracing.shutdown()
print(json.dumps({"on": on}))
"""


@pytest.mark.parametrize(
    ("env", "with_file", "on"),
    [
        ({}, True, True),
        ({}, False, False),  # nowhere to send spans: off
        ({"OTEL_SDK_DISABLED": "true"}, True, False),
        ({"OTEL_SERVICE_NAME": "autopay-matcher-eu"}, True, True),
    ],
)
def test_configure_tracing_from_the_environment(tmp_path, env, with_file, on):
    path = tmp_path / "spans.jsonl"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", CONFIGURE, str(path) if with_file else ""],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout.splitlines()[-1]) == {"on": on}
    if not (on and with_file):
        assert not path.exists()
        return
    [line] = path.read_text().splitlines()
    [resource] = json.loads(line)["resourceSpans"]
    attrs = {
        a["key"]: a["value"]["stringValue"]
        for a in resource["resource"]["attributes"]
        if "stringValue" in a["value"]
    }
    assert attrs["service.name"] == env.get("OTEL_SERVICE_NAME", "matcher")
    assert [s["name"] for s in resource["scopeSpans"][0]["spans"]] == ["work"]
