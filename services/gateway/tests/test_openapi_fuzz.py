"""A bounded schema fuzz of the whole API (schemathesis over the OpenAPI document): for every
operation, generated requests (valid and not) with a working key never get a 500, and every
answer has a documented status and the documented body.

The app runs with its lifespan (real NATS and Redis) in Starlette's test client; the merchant
has a card, a subscription and a rate limit high enough that the fuzz reaches the use cases.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import nats
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from autopay_contracts import provision_streams
from autopay_gateway.bootstrap import build_app
from autopay_runtime.connections import open_redis
from autopay_store.accounts import Accounts
from autopay_store.keys import Keys
from autopay_store.secrets import SecretBox

EXAMPLES = int(os.environ.get("AUTOPAY_FUZZ_EXAMPLES", "12"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


async def _prepare(gateway_settings, namespace) -> str:
    client = await nats.connect(gateway_settings.nats_url)
    await provision_streams(client.jetstream(), namespace)
    await client.drain()
    r = open_redis(gateway_settings.redis_url)
    accounts = Accounts(
        r,
        Keys(gateway_settings.redis_prefix),
        SecretBox(gateway_settings.secret_keys.get_secret_value()),
    )
    shop = await accounts.create_merchant("Fuzz", now=datetime.now(UTC))
    await accounts.add_card(shop.merchant.merchant_id, "6412", "karta@gmail.com", "pw")
    await accounts.set_rate_limit(shop.merchant.merchant_id, per_s=10_000, burst=10_000)
    await r.aclose()
    return shop.api_key


async def _cleanup(gateway_settings, namespace) -> None:
    client = await nats.connect(gateway_settings.nats_url)
    js = client.jetstream()
    for name in await js.streams_info():
        if name.config.name.startswith(namespace.stream_name("")):
            await js.delete_stream(name.config.name)
    await client.drain()
    r = open_redis(gateway_settings.redis_url)
    keys = [k async for k in r.scan_iter(match=f"{gateway_settings.redis_prefix}*")]
    if keys:
        await r.delete(*keys)
    await r.aclose()


def _request(client: TestClient, case, key: str):
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    headers = {**(kwargs.get("headers") or {}), "x-api-key": key}
    body = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif kwargs.get("data") is not None:
        data = kwargs["data"]
        body["content"] = data if isinstance(data, bytes | str) else str(data)
    return client.request(
        kwargs["method"], kwargs["url"], headers=headers, params=kwargs.get("params"), **body
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_generated_requests_get_documented_answers_and_no_500(settings_for_fuzz, namespace):
    gateway_settings = settings_for_fuzz
    key = asyncio.run(_prepare(gateway_settings, namespace))
    app = build_app(gateway_settings)
    schema = schemathesis.openapi.from_dict(app.openapi())
    seen: dict[str, set[int]] = {}
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            for result in schema.get_all_operations():
                operation = result.ok()

                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy())
                def run(case) -> None:
                    response = _request(client, case, key)
                    seen.setdefault(case.operation.label, set()).add(response.status_code)
                    case.validate_response(response, checks=CHECKS)

                run()
    finally:
        asyncio.run(_cleanup(gateway_settings, namespace))
    assert len(seen) == len(app.openapi()["paths"]) + 1  # every operation (settings: GET, PUT)
    # The key works: the fuzz reached the use cases, not only the key check.
    assert 200 in seen["GET /api/my-cards"] and 200 in seen["GET /api/transactions"]
    assert {400, 200} & seen["POST /api/create-payment"], seen["POST /api/create-payment"]


@pytest.fixture
def settings_for_fuzz(settings):
    return settings.model_copy(update={"allow_http_loopback_webhooks": False})
