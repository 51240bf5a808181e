"""The admin API (`/admin/*`, for the merchant bot and operators), real NATS and Redis.

It answers only on its own listener with the admin token: in process, the listener is told
apart by the port of the request's URL (ASGI `scope["server"]`, as uvicorn sets it from the
socket); once over real sockets, with a real gateway process serving both ports.

Attacks: reaching `/admin/*` through the public listener (with the right token, or probing
methods), a wrong or missing token, an invite code used twice or after expiry, one paid order
extending a subscription twice or extending two merchants, an old key still working after its
rotation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from autopay_contracts import CreditDismissed, OrderPaid, mailbox_id_for, parse_event
from autopay_contracts.streams import CREDITS, ORDERS
from autopay_store.accounts import hash_api_key
from autopay_store.invites import Invites
from autopay_store.keys import Keys
from autopay_store.ledger import ledger_scope
from autopay_store.tariffs import Tariff, Tariffs
from autopay_testing.jetstream import stored
from autopay_testing.servers import free_port

from .conftest import CARD, Gateway, gateway_process, ready
from .test_transactions import order, unmatched_credit

TOKEN = "admin-token-for-tests-0123456789"
ADMIN_PORT = 18_443
EN = {"accept-language": "en"}
PRO = Tariff("Pro", price_som=99_000, max_payments=500, days=30, rate_per_s=50, rate_burst=90)

ROUTES = [
    ("POST", "/admin/merchants", {"name": "Shop"}),
    ("GET", "/admin/merchants/1", None),
    ("POST", "/admin/merchants/1/keys", {"mode": "live"}),
    ("POST", "/admin/merchants/1/subscription", {"tariff": "Pro", "order_id": "10001"}),
    ("GET", "/admin/tariffs", None),
    ("GET", "/admin/mailboxes/mbx0123456789abcdef", None),
]


class Admin:
    """The gateway with an HTTP client on its admin listener, carrying the admin token."""

    def __init__(self, gw: Gateway, client: httpx.AsyncClient, redis_client) -> None:
        self.gw = gw
        self.client = client
        keys = Keys(gw.settings.redis_prefix)
        self.tariffs = Tariffs(redis_client, keys)
        self.invites = Invites(redis_client, keys)

    async def post(self, path: str, json=None, **headers) -> httpx.Response:
        return await self.client.post(path, json=json, headers=headers)

    async def get(self, path: str, **headers) -> httpx.Response:
        return await self.client.get(path, headers=headers)

    async def create(self, **body) -> dict:
        response = await self.post("/admin/merchants", {"name": "Shop", **body})
        assert response.status_code == 200, response.text
        return response.json()


def admin_client(gw: Gateway, token: str | None = TOKEN, port: int = ADMIN_PORT):
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=gw.app, raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport, base_url=f"http://gateway-admin:{port}", headers=headers
    )


@pytest.fixture
def admin_settings(settings):
    return settings.model_copy(update={"admin_port": ADMIN_PORT, "admin_token": SecretStr(TOKEN)})


@pytest.fixture
async def admin(admin_settings, streams, start_gateway, redis_client) -> AsyncIterator[Admin]:
    async with start_gateway(admin_settings) as gw, admin_client(gw) as client:
        yield Admin(gw, client, redis_client)


# --- who reaches it ---------------------------------------------------------------------------


async def test_on_the_public_listener_admin_routes_do_not_exist(admin):
    """With the right token and every method, `/admin/*` on the public listener answers what
    an unknown path answers: 404, never 401 or 405."""
    public = admin.gw.client
    unknown = await public.get("/no-such-path")
    auth = {"authorization": f"Bearer {TOKEN}"}
    for method, path, body in ROUTES:
        for verb in {method, "GET", "POST", "DELETE", "PUT"}:
            response = await public.request(verb, path, json=body, headers=auth)
            assert response.status_code == 404, (verb, path, response.text)
            assert response.json() == unknown.json()
    assert (await public.get("/admin", headers=auth)).status_code == 404
    assert (await public.get("/admin/", headers=auth)).status_code == 404


async def test_a_wrong_or_missing_token_is_401(admin):
    for token in (None, "", "wrong", TOKEN + "x", TOKEN[:-1]):
        async with admin_client(admin.gw, token) as client:
            for method, path, body in ROUTES:
                response = await client.request(method, path, json=body, headers=EN)
                assert response.status_code == 401, (token, path, response.text)
                assert response.json() == {
                    "detail": "Admin token is missing or invalid. "
                    "Check the Authorization: Bearer header."
                }
    async with admin_client(admin.gw, None) as client:
        basic = await client.get("/admin/tariffs", headers={"authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
        assert (
            await client.get("/admin/tariffs", headers={"authorization": TOKEN})
        ).status_code == 401
    # The right token on another port than the admin one is the public listener: 404.
    async with admin_client(admin.gw, TOKEN, port=ADMIN_PORT + 1) as client:
        assert (await client.get("/admin/tariffs")).status_code == 404


async def test_without_a_token_the_admin_api_is_off(settings, streams, start_gateway):
    off = settings.model_copy(update={"admin_port": ADMIN_PORT})
    async with start_gateway(off) as gw:
        for token in ("", TOKEN):
            async with admin_client(gw, token) as client:
                assert (await client.get("/admin/tariffs")).status_code == 404


async def test_admin_routes_are_not_in_the_openapi_document(admin):
    paths = (await admin.gw.client.get("/openapi.json")).json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/admin")]


async def test_the_admin_listener_serves_health_too(admin):
    assert (await admin.client.get("/healthz")).json() == {"status": "ok"}


# --- merchants --------------------------------------------------------------------------------


async def test_a_merchant_is_created_with_its_keys(admin):
    created = await admin.create()
    assert set(created) == {"merchant_id", "api_key", "webhook_secret", "bot_key"}
    assert created["api_key"].startswith("ap_live_") and created["bot_key"].startswith("ap_bot_")
    assert created["webhook_secret"].startswith("whsec_")
    for key in (created["api_key"], created["bot_key"]):
        sub = await admin.gw.get("/api/subscription", key)
        assert sub.status_code == 200 and sub.json()["active"] is True
    secret = (await admin.gw.get("/api/webhook-secret", created["api_key"])).json()
    assert created["webhook_secret"] in repr(secret)
    view = (await admin.get(f"/admin/merchants/{created['merchant_id']}")).json()
    assert view["name"] == "Shop" and view["tariff_name"] == "Asosiy"
    assert (view["max_payments"], view["payments_used"], view["active"]) == (100_000, 0, True)
    expires = datetime.fromisoformat(view["expires_at"])
    assert expires.utcoffset() == timedelta(0)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    merchant = await admin.gw.accounts.get_merchant(created["merchant_id"])
    assert not merchant.test_mode


async def test_a_merchant_on_a_tariff(admin):
    await admin.tariffs.save(PRO)
    created = await admin.create(name="Pro shop", tariff="Pro")
    merchant = await admin.gw.accounts.get_merchant(created["merchant_id"])
    assert (merchant.tariff_name, merchant.max_payments) == ("Pro", 500)
    assert (merchant.rate_per_s, merchant.rate_burst) == (50, 90)
    assert abs(merchant.expires_at - (datetime.now(UTC) + timedelta(days=30))) < timedelta(
        minutes=1
    )


async def test_bad_merchant_bodies_are_400_and_create_nothing(admin, redis_client):
    sequence = Keys(admin.gw.settings.redis_prefix).merchant_sequence
    cases = [
        ({}, "Missing required parameter: name"),
        ({"name": ""}, None),
        ({"name": "   "}, None),
        ({"name": "x" * 65}, None),
        ({"name": 5}, None),
        ({"name": "Shop", "tariff": 5}, None),
        ({"name": "Shop", "tariff": "Nope"}, "Unknown tariff: Nope."),
        ({"name": "Shop", "invite_code": 12}, None),
    ]
    for body, detail in cases:
        response = await admin.post("/admin/merchants", body, **EN)
        assert response.status_code == 400, (body, response.text)
        assert set(response.json()) == {"detail"}
        if detail:
            assert response.json()["detail"].startswith(detail), response.json()
    for raw in (b"not json", b"[]", b""):
        response = await admin.client.post("/admin/merchants", content=raw)
        assert response.status_code == 400, raw
    big = await admin.client.post("/admin/merchants", content=b"{" + b" " * 70_000 + b"}")
    assert big.status_code == 413
    assert await redis_client.get(sequence) is None


async def test_an_unknown_merchant_is_404(admin):
    await admin.tariffs.save(PRO)  # parameters are checked first (400), then the merchant
    for method, path, body in ROUTES[1:4]:
        response = await admin.client.request(method, path.replace("/1", "/999"), json=body)
        assert response.status_code == 404, (path, response.text)
        assert set(response.json()) == {"detail"}
    assert (await admin.get("/admin/merchants/999", **EN)).json() == {
        "detail": "Merchant not found."
    }


# --- invite codes -----------------------------------------------------------------------------


async def test_an_invite_code_signs_up_once(admin, redis_client):
    invite = await admin.invites.issue(now=datetime.now(UTC))
    first = await admin.create(invite_code=invite.code)
    assert first["merchant_id"]
    again = await admin.post(
        "/admin/merchants", {"name": "Again", "invite_code": invite.code}, **EN
    )
    assert again.status_code == 400
    assert again.json() == {
        "detail": "The invite code (invite_code) is unknown, used up or expired."
    }
    # Every language names the parameter (the merchant bot tells this refusal apart by it).
    for language in ("uz", "ru"):
        refused = await admin.post(
            "/admin/merchants",
            {"name": "Again", "invite_code": invite.code},
            **{"accept-language": language},
        )
        assert "invite_code" in refused.json()["detail"]
    unknown = await admin.post("/admin/merchants", {"name": "X", "invite_code": "nope123456"})
    assert unknown.status_code == 400
    sequence = Keys(admin.gw.settings.redis_prefix).merchant_sequence
    assert await redis_client.get(sequence) == first["merchant_id"]  # nothing else created


async def test_an_expired_invite_code_is_refused(admin):
    invite = await admin.invites.issue(days=1, now=datetime.now(UTC) - timedelta(days=2))
    response = await admin.post("/admin/merchants", {"name": "Late", "invite_code": invite.code})
    assert response.status_code == 400
    assert (await admin.invites.get(invite.code)).remaining == 1


async def test_a_refused_tariff_does_not_spend_the_invite(admin):
    invite = await admin.invites.issue(now=datetime.now(UTC))
    body = {"name": "Shop", "tariff": "Nope", "invite_code": invite.code}
    assert (await admin.post("/admin/merchants", body)).status_code == 400
    assert (await admin.invites.get(invite.code)).remaining == 1
    assert await admin.create(invite_code=invite.code)


async def test_racing_sign_ups_on_the_last_use_create_one_merchant(admin):
    invite = await admin.invites.issue(uses=1, now=datetime.now(UTC))
    body = {"name": "Racer", "invite_code": invite.code}
    replies = await asyncio.gather(*(admin.post("/admin/merchants", body) for _ in range(8)))
    assert sorted(r.status_code for r in replies) == [200] + [400] * 7


# --- keys -------------------------------------------------------------------------------------


async def test_rotating_a_key_stops_the_old_key_of_that_mode_only(admin):
    created = await admin.create()
    mid = created["merchant_id"]
    live, bot = created["api_key"], created["bot_key"]
    test = (await admin.post(f"/admin/merchants/{mid}/keys", {"mode": "test"})).json()
    assert test["mode"] == "test" and test["api_key"].startswith("ap_test_")
    test = test["api_key"]
    for key in (live, bot, test):  # cached by the gateway now (auth_cache_seconds)
        assert (await admin.gw.get("/api/my-cards", key)).status_code == 200

    rotated = await admin.post(f"/admin/merchants/{mid}/keys", {"mode": "live"})
    assert rotated.status_code == 200
    new_live = rotated.json()["api_key"]
    assert rotated.json() == {"merchant_id": mid, "mode": "live", "api_key": new_live}
    assert (await admin.gw.get("/api/my-cards", live)).status_code == 401
    for key in (new_live, bot, test):
        assert (await admin.gw.get("/api/my-cards", key)).status_code == 200

    new_bot = (await admin.post(f"/admin/merchants/{mid}/keys", {"mode": "bot"})).json()
    assert new_bot["api_key"].startswith("ap_bot_")
    assert (await admin.gw.get("/api/my-cards", bot)).status_code == 401
    for key in (new_live, new_bot["api_key"], test):
        assert (await admin.gw.get("/api/my-cards", key)).status_code == 200

    for body in ({}, {"mode": "root"}, {"mode": None}, {"mode": ["live"]}):
        response = await admin.post(f"/admin/merchants/{mid}/keys", body, **EN)
        assert response.status_code == 400, body
    bad = await admin.post(f"/admin/merchants/{mid}/keys", {"mode": "root"}, **EN)
    assert bad.json() == {"detail": "Invalid mode: must be one of live, test, bot."}


async def test_keys_and_secrets_are_never_logged(admin):
    from structlog.contextvars import merge_contextvars
    from structlog.testing import capture_logs

    invite = await admin.invites.issue(now=datetime.now(UTC))
    with capture_logs(processors=[merge_contextvars]) as logs:
        created = await admin.create(invite_code=invite.code)
        mid = created["merchant_id"]
        rotated = (await admin.post(f"/admin/merchants/{mid}/keys", {"mode": "bot"})).json()
    text = repr(logs)
    assert logs and mid in text
    for secret in (*created.values(), rotated["api_key"], invite.code, TOKEN):
        if secret != mid:
            assert secret not in text


# --- the bot key ------------------------------------------------------------------------------


async def test_a_bot_key_acts_as_the_live_merchant(admin):
    created = await admin.create()
    mid, bot = created["merchant_id"], created["bot_key"]
    await admin.gw.accounts.add_card(mid, **CARD)
    cards = (await admin.gw.get("/api/my-cards", bot)).json()["cards"]
    assert [(c["card_last4"], c["gmail"]) for c in cards] == [("6412", "karta@gmail.com")]
    order_id = await order(admin.gw, bot, 50_037)
    checked = await admin.gw.post("/api/check-payment", created["api_key"], {"order_id": order_id})
    assert checked.status_code == 200  # the same (live) world as the live key
    sandbox = await admin.gw.post("/api/sandbox/transfer", bot, {"amount": 1, **CARD})
    assert sandbox.status_code == 403


async def test_a_manual_match_and_a_dismissal_by_the_bot_are_audited_as_the_bots(
    admin, nats_client
):
    gw = admin.gw
    created = await admin.create()
    mid, bot, live = created["merchant_id"], created["bot_key"], created["api_key"]
    await gw.accounts.add_card(mid, **CARD)
    bot_id = "merchant-bot:" + hash_api_key(bot)[:32]
    live_id = hash_api_key(live)[:32]

    order_id = await order(gw, live, 50_037)
    await unmatched_credit(gw, mid, "cr-bot", 50_000)
    matched = await gw.post("/api/transactions/cr-bot/match", bot, {"order_id": order_id})
    assert matched.status_code == 200, matched.text
    assert (await gw.orders.get(order_id)).matched_by == bot_id
    paid = [parse_event(e) for e in await stored(nats_client, ORDERS.name(gw.ns), ".paid")]
    assert isinstance(paid[0], OrderPaid) and paid[0].matched_by == bot_id
    record = await gw.ledger.get(ledger_scope(mid, False), "cr-bot")
    assert record.matched_by == bot_id

    await unmatched_credit(gw, mid, "cr-gift", 10_000)
    assert (await gw.post("/api/transactions/cr-gift/dismiss", bot)).status_code == 200
    record = await gw.ledger.get(ledger_scope(mid, False), "cr-gift")
    assert record.dismissed_by == bot_id
    events = [parse_event(e) for e in await stored(nats_client, CREDITS.name(gw.ns), "")]
    dismissals = [e for e in events if isinstance(e, CreditDismissed)]
    assert [e.dismissed_by for e in dismissals] == [bot_id]

    # The live key's own match is audited by its bare key id.
    second = await order(gw, live, 50_038)
    await unmatched_credit(gw, mid, "cr-live", 50_001)
    assert (await gw.post("/api/transactions/cr-live/match", live, {"order_id": second})).is_success
    assert (await gw.orders.get(second)).matched_by == live_id


# --- subscriptions ----------------------------------------------------------------------------


async def test_a_paid_order_extends_the_subscription_once(admin):
    await admin.tariffs.save(PRO)
    created = await admin.create()
    mid, key = created["merchant_id"], created["api_key"]
    await admin.gw.accounts.add_card(mid, **CARD)
    await order(admin.gw, key, 50_037)  # one payment used of the 100 000
    before = await admin.gw.accounts.get_merchant(mid)
    assert (await admin.gw.get("/api/subscription", key)).json()["tariff_name"] == "Asosiy"

    path = f"/admin/merchants/{mid}/subscription"
    first = await admin.post(path, {"tariff": "Pro", "order_id": "10001"})
    assert first.status_code == 200, first.text
    view = first.json()
    assert view["extended"] is True and view["active"] is True
    assert (view["tariff_name"], view["payments_used"]) == ("Pro", 0)
    assert view["max_payments"] == 100_000 - 1 + 500
    expires = datetime.fromisoformat(view["expires_at"])
    assert abs(expires - (before.expires_at + timedelta(days=30))) < timedelta(seconds=1)
    merchant = await admin.gw.accounts.get_merchant(mid)
    assert (merchant.rate_per_s, merchant.rate_burst) == (50, 90)
    # The merchant's own view changes at once (the auth cache was dropped).
    assert (await admin.gw.get("/api/subscription", key)).json()["tariff_name"] == "Pro"

    again = await admin.post(path, {"tariff": "Pro", "order_id": "10001"})
    assert again.status_code == 200
    assert again.json() == {**view, "extended": False}
    second = (await admin.post(path, {"tariff": "Pro", "order_id": 10002})).json()
    assert second["extended"] is True and second["max_payments"] == view["max_payments"] + 500


async def test_a_lapsed_subscription_starts_again_now(admin, redis_client):
    await admin.tariffs.save(PRO)
    mid = (await admin.create())["merchant_id"]
    past = datetime.now(UTC) - timedelta(days=1)
    await redis_client.hset(
        Keys(admin.gw.settings.redis_prefix).merchant(mid),
        mapping={"expires_at": past.timestamp(), "payments_used": 40},
    )
    lapsed = (await admin.get(f"/admin/merchants/{mid}")).json()
    assert lapsed["active"] is False and lapsed["payments_used"] == 40
    view = (
        await admin.post(f"/admin/merchants/{mid}/subscription", {"tariff": "Pro", "order_id": "7"})
    ).json()
    assert view["extended"] and view["active"]
    assert (view["max_payments"], view["payments_used"]) == (500, 0)
    expires = datetime.fromisoformat(view["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)


async def test_extension_refusals(admin):
    await admin.tariffs.save(PRO)
    a = (await admin.create(name="A"))["merchant_id"]
    b = (await admin.create(name="B"))["merchant_id"]
    path = f"/admin/merchants/{a}/subscription"
    assert (await admin.post(path, {"tariff": "Pro", "order_id": "10001"})).status_code == 200
    taken = await admin.post(
        f"/admin/merchants/{b}/subscription", {"tariff": "Pro", "order_id": "10001"}, **EN
    )
    assert taken.status_code == 409
    assert taken.json() == {
        "detail": "This order already extended another merchant's subscription."
    }
    assert (await admin.get(f"/admin/merchants/{b}")).json()["tariff_name"] == "Asosiy"
    cases = [
        ({"tariff": "Nope", "order_id": "1"}, 400, "Unknown tariff: Nope."),
        ({"order_id": "1"}, 400, "Missing required parameter: tariff"),
        ({"tariff": "Pro"}, 400, "Missing required parameter: order_id"),
        ({"tariff": "Pro", "order_id": ""}, 400, None),
        ({"tariff": "Pro", "order_id": "x" * 129}, 400, None),
        ({"tariff": ["Pro"], "order_id": "1"}, 400, None),
    ]
    for body, status, detail in cases:
        response = await admin.post(path, body, **EN)
        assert response.status_code == status, (body, response.text)
        if detail:
            assert response.json()["detail"].startswith(detail), response.json()
    unknown = await admin.post(
        "/admin/merchants/999/subscription", {"tariff": "Pro", "order_id": "5"}
    )
    assert unknown.status_code == 404


# --- tariffs and mailboxes --------------------------------------------------------------------


async def test_tariffs_are_listed(admin):
    assert (await admin.get("/admin/tariffs")).json() == {"tariffs": []}
    await admin.tariffs.save(PRO)
    await admin.tariffs.save(Tariff("Asosiy", 0, 100, 30))
    listed = (await admin.get("/admin/tariffs")).json()["tariffs"]
    assert [t["name"] for t in listed] == ["Asosiy", "Pro"]
    assert listed[1] == {
        "name": "Pro",
        "price_som": 99_000,
        "max_payments": 500,
        "days": 30,
        "rate_per_s": 50,
        "rate_burst": 90,
    }


async def test_a_mailbox_owner_is_found_by_mailbox_id(admin):
    mid = (await admin.create())["merchant_id"]
    card = await admin.gw.accounts.add_card(mid, "6412", "K.arta+shop@gmail.com")
    assert card.mailbox_id == mailbox_id_for("karta@gmail.com")
    found = await admin.get(f"/admin/mailboxes/{card.mailbox_id}")
    assert found.status_code == 200
    assert found.json() == {
        "mailbox_id": card.mailbox_id,
        "gmail": "karta@gmail.com",
        "merchant_id": mid,
    }
    await admin.gw.accounts.remove_card(mid, card.card_id)
    gone = await admin.get(f"/admin/mailboxes/{card.mailbox_id}", **EN)
    assert gone.status_code == 404 and gone.json() == {"detail": "Nobody owns this mailbox."}
    assert (await admin.get(f"/admin/mailboxes/{mailbox_id_for('x@gmail.com')}")).status_code == 404
    assert (await admin.get("/admin/mailboxes/" + "m" * 200)).status_code == 404


# --- a real process ---------------------------------------------------------------------------


async def test_a_gateway_process_serves_the_admin_api_on_its_own_port_only(settings, streams):
    public, admin_port = free_port(), free_port()
    env = {"AUTOPAY_ADMIN_PORT": str(admin_port), "AUTOPAY_ADMIN_TOKEN": TOKEN}
    auth = {"authorization": f"Bearer {TOKEN}"}
    with gateway_process(settings, public, **env) as process:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{public}", timeout=5) as client:
            await ready(client, process)
            admin_url = f"http://127.0.0.1:{admin_port}"
            assert (await client.get("/admin/tariffs", headers=auth)).status_code == 404
            assert (await client.post("/admin/merchants", headers=auth)).status_code == 404
            assert (await client.get(f"{admin_url}/admin/tariffs")).status_code == 401
            wrong = {"authorization": "Bearer wrong"}
            assert (
                await client.get(f"{admin_url}/admin/tariffs", headers=wrong)
            ).status_code == 401
            listed = await client.get(f"{admin_url}/admin/tariffs", headers=auth)
            assert listed.status_code == 200 and listed.json() == {"tariffs": []}
            created = await client.post(
                f"{admin_url}/admin/merchants", json={"name": "Real"}, headers=auth
            )
            assert created.status_code == 200, created.text
            keys = created.json()
            # The same process and state: the new keys work on the public port at once.
            for key in (keys["api_key"], keys["bot_key"]):
                mine = await client.get("/api/my-cards", headers={"x-api-key": key})
                assert mine.status_code == 200 and mine.json()["cards"] == []
