import asyncio

from autopay_runtime.health import failing_checks


async def test_failing_checks_names_false_raising_and_slow_checks():
    async def ok() -> bool:
        return True

    async def down() -> bool:
        return False

    async def broken() -> bool:
        raise ConnectionError("refused")

    async def hangs() -> bool:
        await asyncio.sleep(10)
        return True

    checks = [("nats", ok), ("redis", down), ("streams", broken), ("imap", hangs)]
    assert await failing_checks(checks, timeout_s=0.1) == ["redis", "streams", "imap"]
    assert await failing_checks([("nats", ok)]) == []
