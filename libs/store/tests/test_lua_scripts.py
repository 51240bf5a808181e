"""Every Lua script of libs/store is a `.lua` file that a real Redis compiles.

`SCRIPT LOAD` compiles without running, so a syntax error in any script (or in the shared
`order_common.lua` the order book's scripts start with) fails here, not at the first payment.
"""

from __future__ import annotations

import pytest

from autopay_store import scripts

ORDER_BOOK = {name for name in scripts.names() if name.startswith("order_")} - {
    "order_common",
    "order_claim_due",
    "order_match_manual",
    "order_sequence_raise",
}


def test_the_scripts_are_files():
    assert len(scripts.names()) >= 25
    assert {"order_match", "order_common", "ledger_upsert", "mailbox_claim"} <= set(scripts.names())


@pytest.mark.parametrize("name", [n for n in scripts.names() if n != "order_common"])
async def test_redis_compiles_it(redis_client, name):
    preludes = ("order_common",) if name in ORDER_BOOK else ()
    sha = await redis_client.script_load(scripts.source(name, *preludes))
    assert len(sha) == 40
    assert (await redis_client.script_exists(sha)) == [True]
