"""structlog JSON logging with bound ids, the current trace id and secret redaction.

Values under secret-looking keys are replaced before rendering, wherever they occur in the event
dict, so an API key, an app password, a webhook secret or a mail body never reaches a log line.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import orjson
import structlog

from autopay_runtime.tracing import current_ids

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(api[_-]?key|password|passwd|secret|token|authorization|signature|cookie|"
    r"^body$|^raw$|mail_body|raw_mail|rfc822)",
    re.IGNORECASE,
)
_INLINE_SECRETS = re.compile(r"(whsec_[A-Za-z0-9+/=]+|ap_(?:live|test)_[A-Za-z0-9_-]+)")
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")
"""`user:password@` in a URL (NATS and Redis URLs carry their credentials)."""


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    """Whether values under `key` are secrets (log lines use a small, fixed set of keys)."""
    return _SECRET_KEY.search(key) is not None


_MAYBE_SECRET = re.compile(r"whsec_|ap_live|ap_test|://")
"""A string holding none of these cannot match the inline patterns: no substitution is run on
it (one search for all four is cheaper than four substring tests in Python)."""


def _scrub_text(value: str) -> str:
    if _MAYBE_SECRET.search(value) is None:
        return value
    return _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", _INLINE_SECRETS.sub(REDACTED, value))


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: (REDACTED if _secret_key(str(k)) else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


_PLAIN = (bool, int, float, type(None))


def redact_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Every value under a secret-looking key, and every secret inside a value, replaced (in
    place: the dict is this log line's own)."""
    for key, value in event_dict.items():
        if _secret_key(key):
            event_dict[key] = REDACTED
        elif type(value) is str:
            if _MAYBE_SECRET.search(value) is not None:
                event_dict[key] = _scrub_text(value)
        elif type(value) not in _PLAIN:
            event_dict[key] = _scrub(value)
    return event_dict


def _json(event_dict: dict[str, Any], **kw: Any) -> str:
    """One JSON line (orjson: several times faster than `json.dumps`; times in ISO 8601, and
    what it cannot encode as its `repr`, as structlog's own fallback gives it)."""
    return orjson.dumps(event_dict, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()


def add_trace_ids(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """`trace_id` and `span_id` of the span the line is logged in, when there is one."""
    ids = current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def configure_logging(service: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the stdlib root logger to emit one JSON object per line."""
    renderer: Any = (
        structlog.processors.JSONRenderer(_json)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        add_trace_ids,
        redact_secrets,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "aioimaplib", "mail.log", "asyncio", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(**bound: Any) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger().bind(**bound)
