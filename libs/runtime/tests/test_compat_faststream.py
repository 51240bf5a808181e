"""FastStream's NATS broker keeps its JetStream context where `autopay_runtime.compat.faststream`
reads it: this fails loudly when an upgrade moves it (real NATS)."""

from __future__ import annotations

import pytest
from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from autopay_runtime.compat.faststream import BrokerNotConnected, jetstream


async def test_a_connected_broker_hands_out_its_jetstream_context(nats_url, streams, namespace):
    broker = NatsBroker(nats_url)
    with pytest.raises(BrokerNotConnected):
        jetstream(broker)
    await broker.connect()
    try:
        js = jetstream(broker)
        assert isinstance(js, JetStreamContext)
        info = await js.stream_info(streams[0])  # it works on the broker's own connection
        assert info.config.name == streams[0]
    finally:
        await broker.stop()
