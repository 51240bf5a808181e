"""The committed AsyncAPI documents are what the FastStream apps generate (issue #2, point 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from autopay_devtools.asyncapi import SERVICES, document, render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "asyncapi"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_committed_document_is_fresh(service):
    committed = DOCS / f"{service}.json"
    assert committed.exists(), f"{committed} missing: run `make asyncapi`"
    assert committed.read_text() == render(service), f"{committed.name} is stale: `make asyncapi`"


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_document_lists_what_the_service_publishes_or_consumes(service):
    doc = document(service)
    assert doc["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses and all(a.startswith("autopay.v1.") for a in addresses)


def test_matcher_document_has_contract_schemas():
    schemas = document("matcher")["components"]["schemas"]
    assert {"OrderPaid", "OrderExpired", "CreditMatched"} <= set(schemas)
    assert "amount_tiyin" in str(schemas["Order"])
