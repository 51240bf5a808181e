"""The bot's metrics take labels from fixed sets: every alert the code sends has its kind."""

import ast
from pathlib import Path

from prometheus_client import REGISTRY

from autopay_merchant_bot import domain, metrics
from autopay_merchant_bot.texts import TEXTS

SOURCE = Path(metrics.__file__).parent


def told_keys() -> set[str]:
    """The text keys alerts.py hands to `tell` (directly, through `_tell_mailbox_owner`, or
    through a variable it assigned), and the alerts of mailbox state changes in domain.py."""
    tree = ast.parse((SOURCE / "alerts.py").read_text())
    assigned: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            constants = {
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
            assigned.setdefault(node.targets[0].id, set()).update(constants)
    keys: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        position = {"tell": 1, "_tell_mailbox_owner": 2}.get(node.func.attr)
        if position is None or len(node.args) <= position:
            continue
        arg = node.args[position]
        if isinstance(arg, ast.Constant):
            keys.add(arg.value)
        elif isinstance(arg, ast.Name) and arg.id in assigned:
            keys |= assigned[arg.id]
    domain_tree = ast.parse((SOURCE / "domain.py").read_text())
    keys |= {
        node.value
        for node in ast.walk(domain_tree)
        if isinstance(node, ast.Constant) and str(node.value).startswith("mailbox_")
    }
    return keys & set(TEXTS)


def test_every_alert_the_bot_sends_is_a_fixed_kind():
    keys = told_keys()
    assert len(keys) >= 10, keys
    assert keys <= set(metrics.ALERT_KINDS), keys - set(metrics.ALERT_KINDS)
    quota = {f"quota_{level}" for level in (domain.quota_level(8, 10), domain.quota_level(10, 10))}
    assert quota <= set(metrics.ALERT_KINDS)
    assert set(metrics.ALERT_KINDS) <= set(TEXTS)


def test_series_exist_before_the_first_alert_and_other_texts_add_none():
    sample = REGISTRY.get_sample_value
    for kind in metrics.ALERT_KINDS:
        for outcome in metrics.ALERT_OUTCOMES:
            labels = {"kind": kind, "outcome": outcome}
            assert sample("autopay_bot_alerts_total", labels) is not None, labels
    for outcome in metrics.CALL_OUTCOMES:
        assert sample("autopay_bot_telegram_calls_total", {"outcome": outcome}) is not None
    before = sample("autopay_bot_alerts_total", {"kind": "other", "outcome": "sent"})
    metrics.alert("a text nobody declared", "sent")
    assert sample("autopay_bot_alerts_total", {"kind": "other", "outcome": "sent"}) == before + 1
    undeclared = {"kind": "a text nobody declared", "outcome": "sent"}
    assert sample("autopay_bot_alerts_total", undeclared) is None
