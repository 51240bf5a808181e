"""AsyncAPI documents generated from the services' FastStream apps (`make asyncapi`).

Each service's composition root is built with fixed settings (so the output does not depend on
the environment), its NATS broker is taken from the app, and the AsyncAPI 3.0 document lists the
subscribers and the declared publishers with their pydantic schemas from `libs/contracts`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from pathlib import Path

from faststream import AsyncAPI, FastStream

SERVICES = {
    "gateway": "autopay_gateway",
    "mail-ingest": "autopay_mail_ingest",
    "matcher": "autopay_matcher",
    "notifier": "autopay_notifier",
}
DOC_SETTINGS = {
    "nats_url": "nats://nats:4222",
    "namespace": "autopay",
    "secret_keys": "x" * 43 + "=",
}


def _broker(module: str):
    bootstrap = importlib.import_module(f"{module}.bootstrap")
    build_app = bootstrap.build_app
    first = next(iter(inspect.signature(build_app).parameters))
    settings_cls = typing.get_type_hints(build_app)[first]
    settings = settings_cls(**DOC_SETTINGS)
    app = build_app(settings)
    broker = getattr(app, "broker", None) or getattr(getattr(app, "state", None), "broker", None)
    if broker is None:
        raise RuntimeError(f"{module}.bootstrap.build_app gives no NATS broker")
    # What a service consumes without FastStream is declared by its `asyncapi.document`.
    try:
        declarations = importlib.import_module(f"{module}.asyncapi")
    except ModuleNotFoundError as exc:
        if exc.name != f"{module}.asyncapi":
            raise
    else:
        declarations.document(broker, settings)
    return broker


def document(service: str) -> dict:
    from autopay_contracts.events import SCHEMA_VERSION

    spec = AsyncAPI(
        title=f"AutoPay {service}",
        version=f"{SCHEMA_VERSION}.0.0",
        description=(
            f"Events the AutoPay {service} service consumes and publishes. Subjects are "
            "`autopay.v1.<aggregate>.<merchant or mailbox id>.<event>`; every message carries a "
            "deterministic `Nats-Msg-Id`."
        ),
        schema_version="3.0.0",
    )
    app = FastStream(_broker(SERVICES[service]), specification=spec)
    return app.schema.to_specification().to_jsonable()


def render(service: str) -> str:
    return json.dumps(document(service), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(out: Path, check: bool = False) -> list[str]:
    """Write (or with `check`, compare) one document per service; returns the stale ones."""
    out.mkdir(parents=True, exist_ok=True)
    stale = []
    for service in SERVICES:
        path = out / f"{service}.json"
        text = render(service)
        if not path.exists() or path.read_text() != text:
            stale.append(path.name)
            if not check:
                path.write_text(text)
    return stale
