import asyncio
import json
from pathlib import Path

import nats
import pytest
from typer.testing import CliRunner

from autopay_cli.main import app
from autopay_contracts import MailboxRegistered, Namespace, mailbox_id_for, provision_streams
from autopay_store.secrets import SecretBox

CORPUS = Path(__file__).resolve().parents[3] / "libs" / "bankmail" / "tests" / "corpus"
PARSE_KEYS = {
    "file",
    "kind",
    "amount_tiyin",
    "currency",
    "card_last4",
    "occurred_at",
    "format",
    "reason",
}
runner = CliRunner()


def test_parse_mail_prints_one_object_per_file_in_order():
    files = [CORPUS / "001-uzcard-email-credit.eml", CORPUS / "048-otp-not-credit.eml"]
    result = runner.invoke(app, ["parse-mail", *map(str, files)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["file"] for r in records] == [str(f) for f in files]
    assert all(set(r) == PARSE_KEYS for r in records)
    expected = json.loads((CORPUS / "expected.json").read_text())["001-uzcard-email-credit.eml"]
    assert records[0]["kind"] == "credit"
    assert records[0]["amount_tiyin"] == expected["amount_tiyin"]
    assert records[0]["occurred_at"] == expected["occurred_at"]
    assert records[1]["kind"] != "credit"


def test_parse_mail_forwarded_needs_the_flag():
    forwarded = str(CORPUS / "024-uzcard-sms-credit.eml")
    plain = json.loads(runner.invoke(app, ["parse-mail", forwarded]).output)
    allowed = json.loads(runner.invoke(app, ["parse-mail", forwarded, "--allow-forwarded"]).output)
    assert plain["kind"] == "rejected" and allowed["kind"] == "credit"
    assert plain["reason"].startswith("forwarder_disabled: ")


def test_parse_mail_alias_option(tmp_path):
    """A notification to an alias is refused as replayed unless the alias is declared."""
    raw = (CORPUS / "002-uzcard-email-credit.eml").read_bytes()
    path = tmp_path / "alias.eml"
    path.write_bytes(raw.replace(b"To: merchant.one@gmail.com", b"To: kassa@shop.example"))
    args = ["parse-mail", str(path), "--mailbox", "merchant.one@gmail.com"]
    refused = json.loads(runner.invoke(app, args).output)
    accepted = json.loads(runner.invoke(app, [*args, "--alias", "kassa@shop.example"]).output)
    assert refused["reason"].startswith("replayed: ")
    assert accepted["kind"] == "credit"


@pytest.fixture
def cli_env(monkeypatch, redis_url, nats_url, redis_prefix, namespace):
    key = SecretBox.generate_key()
    for name, value in {
        "AUTOPAY_REDIS_URL": redis_url,
        "AUTOPAY_NATS_URL": nats_url,
        "AUTOPAY_REDIS_PREFIX": redis_prefix,
        "AUTOPAY_NAMESPACE": namespace.root,
        "AUTOPAY_SECRET_KEYS": key,
    }.items():
        monkeypatch.setenv(name, value)
    return key


def test_admin_creates_merchant_and_connects_card(cli_env, nats_url, namespace, redis_client):
    async def provision():
        client = await nats.connect(nats_url)
        await provision_streams(client.jetstream(), namespace)
        await client.drain()

    asyncio.run(provision())
    created = runner.invoke(app, ["admin", "merchant", "create", "--name", "Shop", "--json"])
    assert created.exit_code == 0, created.output
    merchant = json.loads(created.output)
    assert set(merchant) == {"merchant_id", "api_key", "webhook_secret"}
    assert merchant["api_key"].startswith("ap_live_")

    added = runner.invoke(
        app,
        [
            *("admin", "card", "add", "--merchant", merchant["merchant_id"]),
            *("--card-last4", "6412", "--gmail", "karta@gmail.com", "--app-password", "pw 1"),
        ],
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["card_last4"] == "6412"

    async def registered() -> MailboxRegistered:
        client = await nats.connect(nats_url)
        try:
            msg = await client.jetstream().get_last_msg(
                namespace.stream_name("MAILBOX_CONFIG"),
                Namespace(namespace.root).mailbox_config(mailbox_id_for("karta@gmail.com")),
            )
        finally:
            await client.drain()
        return MailboxRegistered.model_validate_json(msg.data)

    event = asyncio.run(registered())
    assert event.gmail == "karta@gmail.com"
    assert SecretBox(cli_env).decrypt(event.password_encrypted) == "pw 1"
    assert "pw 1" not in event.model_dump_json()


def test_admin_card_add_for_unknown_merchant_fails(cli_env):
    result = runner.invoke(
        app,
        ["admin", "card", "add", "--merchant", "999", "--card-last4", "1234", "--gmail", "a@b.c"],
    )
    assert result.exit_code != 0
