"""mail-ingest's mailbox state, the gateway's view of its health, idempotency records and rate
limits: their key names (running data depends on them) and what each class does with them."""

from __future__ import annotations

from datetime import UTC, datetime

from autopay_store.idempotency import IdempotencyStore, StoredResponse
from autopay_store.keys import Keys
from autopay_store.mailbox_state import Cursor, Health, IngestStore, LeaseStore, MailboxHealth
from autopay_store.ratelimit import RateLimiter

AT = datetime(2026, 5, 16, 4, 30, tzinfo=UTC)


def test_the_key_names_are_the_ones_running_data_has():
    keys = Keys("ap")
    assert keys.mailbox_cursor("m1") == "ap:mailbox:m1:cursor"
    # renamed (a lease lives seconds): a replica of the old name and one of the new may both
    # watch a mailbox for one lease; the cursor never moves back and the dedup markers drop
    # what both read
    assert keys.mailbox_lease("m1") == "ap:mailbox:m1:lease:{ap:mailbox:m1:cursor}"
    assert keys.mailbox_health("m1") == "ap:mailbox:m1:health"
    assert keys.mailbox_seen("m1", "mid:<a@b>") == "ap:mailbox:m1:seen:mid:<a@b>"
    assert keys.mailbox_evidence("m1", "ab12") == "ap:mailbox:m1:evidence:ab12"
    assert keys.ingest_replicas == "ap:ingest:replicas"
    assert keys.rate_limit("k9") == "ap:ratelimit:k9"
    assert keys.idempotency("42", "ab12") == "ap:merchant:42:idem:ab12"
    assert keys.merchant_sequence == "ap:seq:merchant"


async def test_the_health_mail_ingest_writes_is_what_the_gateway_reads(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=60)
    reader = MailboxHealth(redis_client, keys)
    assert await reader.read([]) == {}
    assert await reader.read(["m1"]) == {"m1": Health(None, None)}

    await store.health.set_status("m1", "karta@gmail.com", "connected", AT, connected=True)
    await store.health.record_mail("m1", AT, ("credits",))
    assert await reader.read(["m1", "m1"]) == {"m1": Health("connected", AT)}
    raw = await redis_client.hgetall(keys.mailbox_health("m1"))
    assert raw["gmail"] == "karta@gmail.com" and raw["credits"] == "1"
    assert raw["last_connected_at"] == AT.isoformat()

    await redis_client.hset(keys.mailbox_health("m2"), "last_mail_at", str(AT.timestamp()))
    await redis_client.hset(keys.mailbox_health("m3"), "last_mail_at", "not a time")
    read = await reader.read(["m2", "m3"])
    assert read == {"m2": Health(None, AT), "m3": Health(None, None)}

    await store.health.forget("m1")
    assert await reader.read(["m1"]) == {"m1": Health(None, None)}


async def test_seen_markers_and_evidence(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=30)
    assert not await store.already_seen("m1", "mid:<a@b>", "f1")
    await store.mark_seen("m1", "mid:<a@b>", "f1")
    assert await store.already_seen("m1", "raw:other", "f1")  # the same credit, other bytes
    assert 0 < await redis_client.ttl(keys.mailbox_seen("m1", "fp:f1")) <= 30
    assert store.evidence_key("m1", "ab12") == keys.mailbox_evidence("m1", "ab12")


async def test_the_seen_check_keeps_the_evidence_in_the_same_round_trip(redis_client, redis_prefix):
    """`keep`: the bytes are stored whether the mail is new or a repeat (a re-sent genuine
    notification's bytes are evidence too)."""
    keys = Keys(redis_prefix)
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=30)
    assert not await store.already_seen("m1", "mid:<a@b>", "f1", keep=("d1", b"first"))
    assert await redis_client.get(keys.mailbox_evidence("m1", "d1")) == "first"
    assert 0 < await redis_client.ttl(keys.mailbox_evidence("m1", "d1")) <= 60
    await store.mark_seen("m1", "mid:<a@b>", "f1")
    assert await store.already_seen("m1", "raw:resent", "f1", keep=("d2", b"resent"))
    assert await redis_client.get(keys.mailbox_evidence("m1", "d2")) == "resent"


async def test_marking_a_mail_seen_records_the_mailbox_health_in_the_same_round_trip(
    redis_client, redis_prefix
):
    """One pipeline for the seen markers and the health; a health write that fails (here its
    key is of another type) leaves the markers written and raises nothing: the markers are
    what keeps the mail from being published twice."""
    keys = Keys(redis_prefix)
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=30)
    await store.mark_seen("m1", "mid:<a@b>", "f1", mail_at=AT, counters=("credits",))
    await store.mark_seen("m1", "mid:<c@d>", None, mail_at=AT, counters=("credits",))
    assert await store.already_seen("m1", "raw:other", "f1")
    assert await store.already_seen("m1", "mid:<c@d>", None)
    raw = await redis_client.hgetall(keys.mailbox_health("m1"))
    assert raw == {"last_mail_at": AT.isoformat(), "credits": "2"}

    await redis_client.set(keys.mailbox_health("m2"), "not a hash")
    await store.mark_seen("m2", "mid:<e@f>", "f2", mail_at=AT, counters=("rejected",))
    assert await store.already_seen("m2", "mid:<e@f>", None)
    assert await store.already_seen("m2", "raw:x", "f2")


async def test_the_markers_and_the_cursor_move_in_one_round_trip(redis_client, redis_prefix):
    """`mark_seen` with a cursor: the markers, the health and the cursor land together. A
    cursor fenced by a lease this replica does not hold stays where it is (False), the
    markers are written all the same; a Redis that lost its scripts still moves it."""
    keys = Keys(redis_prefix)
    store = IngestStore(redis_client, keys, evidence_ttl_s=60, dedup_ttl_s=30)
    leases = LeaseStore(redis_client, keys, "replica-1", lease_s=5)
    assert await leases.acquire(["m1"]) == [True]
    mine = (leases.lease_key("m1"), "replica-1")

    passed = await store.mark_seen(
        "m1", "mid:<a@b>", "f1", mail_at=AT, counters=("credits",), cursor=Cursor(7, 10), lease=mine
    )
    assert passed is True
    assert await store.cursor("m1") == Cursor(7, 10)
    assert await store.already_seen("m1", "raw:x", "f1")

    theirs = (leases.lease_key("m1"), "replica-2")
    assert not await store.mark_seen("m1", "mid:<c@d>", None, cursor=Cursor(7, 11), lease=theirs)
    assert await store.cursor("m1") == Cursor(7, 10)
    assert await store.already_seen("m1", "mid:<c@d>", None)

    await redis_client.script_flush()
    assert await store.mark_seen("m1", "mid:<e@f>", None, cursor=Cursor(7, 12), lease=mine)
    assert await store.cursor("m1") == Cursor(7, 12)
    assert await redis_client.hget(keys.mailbox_health("m1"), "credits") == "1"


async def test_a_lease_key_is_the_one_the_cursor_is_fenced_by(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    leases = LeaseStore(redis_client, keys, "replica-1", lease_s=5)
    assert leases.lease_key("m1") == keys.mailbox_lease("m1")
    assert await leases.acquire(["m1"]) == [True]
    assert await redis_client.get(keys.mailbox_lease("m1")) == "replica-1"
    assert await leases.heartbeat() == 1
    assert await redis_client.zscore(keys.ingest_replicas, "replica-1")


async def test_idempotency_claims_replays_and_refuses(redis_client, redis_prefix):
    store = IdempotencyStore(redis_client, Keys(redis_prefix), ttl_s=120)
    assert (await store.claim("42", "k1", "fp-a")).outcome == "new"
    assert (await store.claim("42", "k1", "fp-a")).outcome == "pending"
    assert (await store.claim("42", "k1", "fp-b")).outcome == "mismatch"
    assert (await store.claim("43", "k1", "fp-b")).outcome == "new"  # per merchant
    await store.complete("42", "k1", "fp-a", StoredResponse(200, b'{"ok":true}'))
    replay = await store.claim("42", "k1", "fp-a")
    assert (replay.outcome, replay.response) == ("replay", StoredResponse(200, b'{"ok":true}'))
    assert await store.reopen("43", "k1", "fp-b") == "released"  # unbound: freed
    assert (await store.claim("43", "k1", "fp-c")).outcome == "new"


async def test_the_token_bucket(redis_client, redis_prefix):
    keys = Keys(redis_prefix)
    limiter = RateLimiter(redis_client, keys)
    assert await limiter.take("k", 0, 1, now=100.0) == 0.0  # no limit
    assert await limiter.take("k", 1.0, 2, now=100.0) == 0.0
    assert await limiter.take("k", 1.0, 2, now=100.0) == 0.0
    assert await limiter.take("k", 1.0, 2, now=100.0) == 1.0
    assert await limiter.take("k", 1.0, 2, now=101.0) == 0.0
    assert 0 < await redis_client.pttl(keys.rate_limit("k")) <= 3000


async def test_the_seen_check_with_evidence_works_on_a_redis_cluster(redis_prefix):
    """The markers of one mail may lie in different hash slots: the check must not send them
    as one multi-key command in a pipeline (a Cluster refuses that, and no mail would ever be
    published)."""
    from autopay_runtime.connections import open_redis
    from autopay_testing.redis_cluster import start_redis_cluster

    with start_redis_cluster(3) as cluster:
        client = open_redis(cluster.url)
        keys = Keys(redis_prefix)
        store = IngestStore(client, keys, evidence_ttl_s=60, dedup_ttl_s=30)
        try:
            seen = [keys.mailbox_seen("m1", "mid:<a@b>"), keys.mailbox_seen("m1", "fp:f1")]
            slots = {await client.cluster_keyslot(k) for k in seen}
            assert len(slots) == 2  # else this test proves nothing
            assert not await store.already_seen("m1", "mid:<a@b>", "f1", keep=("d1", b"raw"))
            assert await store.mark_seen("m1", "mid:<a@b>", "f1", cursor=Cursor(7, 3))
            assert await store.cursor("m1") == Cursor(7, 3)
            assert await store.already_seen("m1", "raw:other", "f1", keep=("d2", b"again"))
            assert await client.get(keys.mailbox_evidence("m1", "d2")) == "again"
        finally:
            await client.aclose()
