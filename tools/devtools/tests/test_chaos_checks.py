"""The chaos run's figures (`autopay_devtools.chaos.checks`) on synthetic runs: each violation is
counted, retries of one webhook are not, and the command fails on any of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopay_devtools.chaos import __main__ as chaos_main
from autopay_devtools.chaos.checks import (
    FAILING,
    Delivery,
    Intent,
    LedgerRecord,
    clean,
    evaluate,
    recover_order_ids,
)

GMAIL = "shop@gmail.com"


def paid_order(n: int, amount: int | None = None, card: str = "7000") -> Intent:
    return Intent(
        index=n,
        merchant=0,
        gmail=GMAIL,
        card_last4=card,
        amount=amount or 20_000 + n,
        order_id=str(10_000 + n),
        mail_delivered=True,
        status="paid",
    )


def hook(intent: Intent, webhook_id: str | None = None, **changes) -> Delivery:
    fields = {
        "merchant": intent.merchant,
        "webhook_id": webhook_id or f"msg_{intent.order_id}",
        "verified": True,
        "order_id": intent.order_id,
        "status": "paid",
        "paid_at": "2026-01-01T12:00:00",
        "gmail": intent.gmail,
        "card_last4": intent.card_last4,
        "amount": intent.amount,
    }
    return Delivery(**(fields | changes))


def credit(intent: Intent, credit_id: str | None = None, **changes) -> LedgerRecord:
    fields = {
        "id": credit_id or f"cr{intent.index}",
        "status": "matched",
        "order_id": intent.order_id,
        "gmail": intent.gmail,
        "card_last4": intent.card_last4,
        "amount": intent.amount,
    }
    return LedgerRecord(**(fields | changes))


def clean_run(n: int = 3) -> tuple[list[Intent], list[Delivery], list[LedgerRecord]]:
    intents = [paid_order(i) for i in range(n)]
    return intents, [hook(i) for i in intents], [credit(i) for i in intents]


def failing(figures: dict[str, int]) -> dict[str, int]:
    return {name: figures[name] for name in FAILING if figures[name]}


def test_a_clean_run_is_clean():
    figures = evaluate(*clean_run())
    assert failing(figures) == {}
    assert clean(figures)
    assert (figures["orders"], figures["paid"], figures["mails"], figures["webhooks"]) == (
        3,
        3,
        3,
        3,
    )


def test_retries_of_one_webhook_id_are_fine():
    intents, deliveries, ledger = clean_run()
    deliveries += [hook(intents[0]), hook(intents[0])]
    figures = evaluate(intents, deliveries, ledger)
    assert failing(figures) == {}
    assert figures["webhook_retries"] == 2


def test_a_delivered_mail_whose_order_is_not_paid_is_lost():
    intents, deliveries, ledger = clean_run()
    intents[1].status = "waiting"
    del deliveries[1], ledger[1]
    assert failing(evaluate(intents, deliveries, ledger)) == {"lost": 1}


def test_an_unpaid_order_whose_mail_was_never_delivered_is_not_lost():
    intents, deliveries, ledger = clean_run()
    intents[1].status, intents[1].mail_delivered = "waiting", False
    del deliveries[1], ledger[1]
    assert failing(evaluate(intents, deliveries, ledger)) == {}


def test_an_order_paid_by_two_credits_is_double_paid():
    intents, deliveries, ledger = clean_run()
    ledger.append(credit(intents[0], "cr-again"))
    assert failing(evaluate(intents, deliveries, ledger)) == {"double_paid": 1}


def test_two_payments_told_by_the_webhooks_are_double_paid():
    intents, deliveries, ledger = clean_run()
    deliveries.append(hook(intents[2], "msg_other", paid_at="2026-01-01T12:00:09"))
    figures = evaluate(intents, deliveries, ledger)
    assert failing(figures) == {"double_paid": 1, "duplicate_webhook_ids": 1}


def test_a_credit_that_paid_two_orders_is_double_paid():
    intents, deliveries, ledger = clean_run()
    # order 1 paid by credit cr0, which also paid order 0
    ledger[1] = credit(intents[1], "cr0")
    assert failing(evaluate(intents, deliveries, ledger)) == {"double_paid": 1}


def test_one_mail_read_twice_paying_two_orders_is_double_paid():
    intents, deliveries, ledger = clean_run()
    ledger.append(credit(intents[0], "cr-second-read", order_id=intents[1].order_id))
    figures = evaluate(intents, deliveries, ledger)
    # order 1 has two credits, the mail of order 0 paid two orders, one pairing is wrong
    assert failing(figures) == {"double_paid": 2, "wrong_matches": 1}


def test_a_paid_order_without_a_webhook_is_missing_one():
    intents, deliveries, ledger = clean_run()
    del deliveries[0]
    assert failing(evaluate(intents, deliveries, ledger)) == {"missing_webhooks": 1}


def test_a_webhook_that_does_not_verify_does_not_count():
    intents, deliveries, ledger = clean_run()
    deliveries[0] = hook(intents[0], verified=False)
    figures = evaluate(intents, deliveries, ledger)
    assert failing(figures) == {"missing_webhooks": 1, "bad_signatures": 1}


def test_two_webhook_ids_for_one_order_are_duplicates():
    intents, deliveries, ledger = clean_run()
    deliveries.append(hook(intents[0], "msg_second"))
    assert failing(evaluate(intents, deliveries, ledger)) == {"duplicate_webhook_ids": 1}


def test_a_credit_paying_an_order_of_another_amount_is_a_wrong_match():
    intents, deliveries, ledger = clean_run()
    ledger[2] = credit(intents[2], amount=intents[2].amount + 1)
    assert failing(evaluate(intents, deliveries, ledger)) == {"wrong_matches": 1}


def test_a_paid_order_missing_from_the_ledger_is_a_gap():
    intents, deliveries, ledger = clean_run()
    del ledger[0]
    assert failing(evaluate(intents, deliveries, ledger)) == {"ledger_gaps": 1}


def test_an_idempotency_failure_is_counted_and_its_order_recovered():
    intents, deliveries, ledger = clean_run()
    orphan = intents[1]
    orphan.order_id, orphan.status = None, None
    orphan.idempotency_failure, orphan.create_error = True, "409 already reserved"
    figures = evaluate(intents, deliveries, ledger)
    assert failing(figures) == {"lost": 1, "wrong_matches": 1, "idempotency_failures": 1}

    assert recover_order_ids(intents, deliveries, ledger) == 1
    assert orphan.order_id == "10001"
    orphan.status = "paid"
    assert failing(evaluate(intents, deliveries, ledger)) == {"idempotency_failures": 1}


def test_recovery_uses_a_verified_webhook_when_the_ledger_has_nothing():
    intents, deliveries, _ = clean_run()
    intents[0].order_id, intents[0].idempotency_failure = None, True
    assert recover_order_ids(intents, [hook(paid_order(0), verified=False)], []) == 0
    assert recover_order_ids(intents, deliveries, []) == 1
    assert intents[0].order_id == "10000"


def test_an_order_that_could_not_be_created_is_a_create_error():
    intents, deliveries, ledger = clean_run()
    intents.append(Intent(9, 0, GMAIL, "7000", 29_999, create_error="no answer"))
    assert failing(evaluate(intents, deliveries, ledger)) == {"create_errors": 1}


def test_the_command_prints_its_figures_last_and_fails_on_a_violation(monkeypatch, capsys):
    intents, deliveries, ledger = clean_run()
    intents[0].status = "waiting"
    figures = evaluate(intents, deliveries, ledger) | {"not_ready": [], "chaos_failures": []}

    async def drive(options):
        assert options.orders == 7 and options.state_dir == Path("/nowhere")
        return dict(figures)

    monkeypatch.setattr(chaos_main, "drive", drive)
    assert chaos_main.main(["--state-dir", "/nowhere", "--orders", "7"]) == 1
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["lost"] == 1 and last["ok"] is False

    figures["lost"] = 0
    assert chaos_main.main(["--state-dir", "/nowhere", "--orders", "7"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ok"] is True


@pytest.mark.parametrize("argv", [["--orders", "0"], ["--cards-per-mailbox", "11"]])
def test_the_command_refuses_nonsense_counts(argv):
    with pytest.raises(SystemExit):
        chaos_main.parse(["--state-dir", "/nowhere", *argv])
