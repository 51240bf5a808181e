"""OpenTelemetry tracing, one way for every service.

`configure_tracing` sets up the process's tracer provider from the standard `OTEL_*` variables
(`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `OTEL_TRACES_EXPORTER`, `OTEL_BSP_*`,
`OTEL_SDK_DISABLED`) and `AUTOPAY_TRACE_FILE`, which writes finished spans as OTLP JSON lines
(one `ExportTraceServiceRequest` per line, ids in hex, as the OpenTelemetry Collector's file
exporter writes them). With neither a file nor an OTLP endpoint, nothing is set up and every
helper here costs a check of one flag: tracing is off.

When on, it instruments redis-py and aiohttp's client; the services add FastAPI
(`instrument_fastapi`) and NATS: FastStream's telemetry middleware on every broker
(`broker_middlewares`, which `connections.nats_broker` passes), and for the paths that talk to
nats-py directly, `inject`/`extract` of the W3C `traceparent` header and `consumer_span`. So a
credit's trace runs from the mail that carried it through the matcher's decision to the
notifier's webhook, one trace id from end to end.

Roots: a span without a parent is kept only when it starts work (a server request, a consumed
message or mail, a published event). Client spans of background loops (a lease renewal, a
health write, the bot's long poll) would otherwise be a trace each, every few milliseconds.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import Attributes

TRACE_FILE_DELAY_MS = 500
"""How often spans are written to the trace file (`OTEL_BSP_SCHEDULE_DELAY` overrides)."""

_ROOT_KINDS = frozenset({SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER})
_HEALTH_URLS = "healthz,readyz,metrics"

_provider: TracerProvider | None = None
"""The SDK tracer provider once `configure_tracing` turned tracing on, else None."""


def enabled() -> bool:
    return _provider is not None


def tracer(name: str) -> trace.Tracer:
    """A tracer for the module `name`, safe to take at import: it draws spans from the
    process's provider once `configure_tracing` set one, and is a no-op until then."""
    return trace.get_tracer(name)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _exporter_names() -> set[str]:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").replace(" ", "").lower()
    return {name for name in names.split(",") if name}


def configure_tracing(service: str, trace_file: str | Path | None = None) -> bool:
    """Turns tracing on for this process when there is somewhere to send spans: the trace
    file, an OTLP endpoint (`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, or `OTEL_TRACES_EXPORTER`
    naming `otlp`) or the console (`OTEL_TRACES_EXPORTER=console`). Returns whether it is on.
    Call it once, before the app is built (the broker takes its middleware then)."""
    global _provider
    if _provider is not None:
        return True
    if _truthy("OTEL_SDK_DISABLED"):
        return False
    exporters = _exporters(trace_file)
    if not exporters:
        return False

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=None if os.environ.get("OTEL_TRACES_SAMPLER") else work_sampler(),
    )
    for exporter, delay_ms in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
    trace.set_tracer_provider(provider)
    _provider = provider
    _instrument_clients(provider)
    return True


def _exporters(trace_file: str | Path | None) -> list[tuple[SpanExporter, float | None]]:
    names = _exporter_names()
    found: list[tuple[SpanExporter, float | None]] = []
    if trace_file:
        delay = None if os.environ.get("OTEL_BSP_SCHEDULE_DELAY") else TRACE_FILE_DELAY_MS
        found.append((OtlpJsonFileExporter(trace_file), delay))
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if "none" not in names and (endpoint or "otlp" in names):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        found.append((OTLPSpanExporter(), None))
    if "console" in names:
        found.append((ConsoleSpanExporter(), None))
    return found


def _instrument_clients(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    if importlib.util.find_spec("aiohttp") is None:  # only the services that make HTTP calls
        return
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

    AioHttpClientInstrumentor().instrument(tracer_provider=provider, url_filter=traced_url)


_BOT_TOKEN = re.compile(r"/bot\d+:[^/]+")


def traced_url(url: Any) -> str:
    """The URL a client span records: no credentials, query or fragment (a merchant's webhook
    URL may carry a token there), and no Telegram bot token (in the Bot API's path)."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rpartition("@")[2]
    path = _BOT_TOKEN.sub("/bot[redacted]", parts.path)
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def shutdown() -> None:
    """Writes out the spans still queued and turns tracing off (also done at exit)."""
    global _provider
    provider, _provider = _provider, None
    if provider is not None:
        provider.shutdown()
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().uninstrument()
        try:
            from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor

            AioHttpClientInstrumentor().uninstrument()
        except ImportError:  # pragma: no cover
            pass


# --- sampling -------------------------------------------------------------------------------


class WorkRoots(Sampler):
    """Keeps a root span that starts work (`_ROOT_KINDS`), drops any other root."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind in _ROOT_KINDS:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "WorkRoots"


def work_sampler() -> Sampler:
    """Parent-based: a child follows its parent; a root is kept when it starts work, and
    dropped when it is a client call or an internal step of a background loop."""
    return ParentBased(root=WorkRoots())


# --- instrumentation ------------------------------------------------------------------------


def broker_middlewares() -> tuple[Any, ...]:
    """FastStream's NATS telemetry middleware when tracing is on (spans for every publish and
    every consumed message, `traceparent` in the headers), else none."""
    if _provider is None:
        return ()
    from faststream.nats.opentelemetry import NatsTelemetryMiddleware

    return (NatsTelemetryMiddleware(tracer_provider=_provider),)


def instrument_fastapi(app: Any) -> None:
    """Server spans for every request but the health and metrics endpoints."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", _HEALTH_URLS)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=excluded)


def inject(headers: MutableMapping[str, str], parent: Context | None = None) -> None:
    """Adds `traceparent` (and `tracestate`) for `parent`, or the current span, to message
    headers that go out through nats-py directly."""
    if _provider is not None:
        propagate.inject(headers, context=parent)


def extract(headers: Mapping[str, str] | None) -> Context:
    """The trace context a message's headers carry (empty when none or tracing is off)."""
    if _provider is None or not headers:
        return Context()
    return propagate.extract(headers)


def consumer_span(name: str, headers: Mapping[str, str] | None, **attributes: Any) -> Span:
    """A started (not current) consumer span for one message taken through nats-py, the child
    of the trace its headers carry. The caller ends it."""
    return tracer("autopay.nats").start_span(
        name, context=extract(headers), kind=SpanKind.CONSUMER, attributes=attributes
    )


def traceparent() -> str | None:
    """The current span's `traceparent` header value (None while tracing is off or outside a
    span), to keep beside something a later trace will link to."""
    if _provider is None:
        return None
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers.get("traceparent")


def span_context(value: str | None) -> trace.SpanContext | None:
    """The span a kept `traceparent` names, for a link (None when it names none)."""
    if not value:
        return None
    ctx = trace.get_current_span(propagate.extract({"traceparent": value})).get_span_context()
    return ctx if ctx.is_valid else None


def context_of(span: Span) -> Context:
    return trace.set_span_in_context(span)


def end(span: Span, result: object = None) -> None:
    """Ends `span`, marked as an error when `result` is an exception (the work failed)."""
    if isinstance(result, BaseException):
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(result).__name__))
    span.end()


class attached:
    """`with attached(context):` makes `context` current for the block (None: no change)."""

    def __init__(self, ctx: Context | None) -> None:
        self._ctx = ctx
        self._token: Any = None

    def __enter__(self) -> None:
        if self._ctx is not None:
            self._token = otel_context.attach(self._ctx)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)


def current_ids() -> tuple[str, str] | None:
    """The current span's trace id and span id in hex, when there is a valid one."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


# --- the trace file -------------------------------------------------------------------------


class OtlpJsonFileExporter(SpanExporter):
    """Appends each exported batch as one line of OTLP JSON. Several processes may share the
    file: a line is one `write` to a file opened for appending."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = (json.dumps(otlp_json(spans), separators=(",", ":")) + "\n").encode()
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Finished SDK spans as an OTLP/JSON `ExportTraceServiceRequest`: the protobuf encoding
    rendered to JSON with camelCase names and integer enums, trace and span ids in hex (the
    OTLP/JSON rule, where protobuf's own JSON would write base64)."""
    from google.protobuf import json_format
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    document = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource in document.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                _hex_ids(span)
                for link in span.get("links", []):
                    _hex_ids(link)
    return document


def _hex_ids(item: dict[str, Any]) -> None:
    for field in _ID_FIELDS:
        if item.get(field):
            item[field] = base64.b64decode(item[field]).hex()
