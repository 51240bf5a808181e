"""The alert rules: both files parse and agree, every rule names metrics the services really
expose, and every alert has its section in docs/operations.md."""

from __future__ import annotations

import importlib
import re
from functools import cache
from pathlib import Path

import promql_parser
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1]
REPO = DEPLOY.parent
RULES = DEPLOY / "observability" / "prometheus-rules.yaml"
OPERATOR_RULE = DEPLOY / "observability" / "prometheusrule.yaml"
OPERATIONS = REPO / "docs" / "operations.md"
SERVICE_MODULES = ("autopay_gateway", "autopay_mail_ingest", "autopay_matcher", "autopay_notifier")
METRIC = re.compile(r"\bautopay_[a-z0-9_]+\b")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


@cache
def exposed_samples() -> frozenset[str]:
    """Every sample name the services' metrics modules register (`_total`, `_bucket`, ...)."""
    from prometheus_client import REGISTRY

    for module in SERVICE_MODULES:
        try:
            importlib.import_module(f"{module}.metrics")
        except ModuleNotFoundError as exc:
            if exc.name != f"{module}.metrics":
                raise
    return frozenset(s.name for family in REGISTRY.collect() for s in family.samples)


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lowercase, punctuation dropped, spaces → dashes."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_both_rule_files_parse_and_hold_the_same_groups() -> None:
    operator = load(OPERATOR_RULE)
    assert operator["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator["kind"] == "PrometheusRule" and operator["metadata"]["name"]
    assert operator["spec"]["groups"] == load(RULES)["groups"]


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_rule_names_exposed_metrics_and_has_a_runbook(rule: dict) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["summary"]
    names = set(METRIC.findall(rule["expr"]))
    assert names, "the rule names no AutoPay metric"
    assert names <= exposed_samples(), names - exposed_samples()
    page, _, anchor = rule["annotations"]["runbook"].partition("#")
    assert (REPO / page).resolve() == OPERATIONS
    assert anchor == rule["alert"].lower()
    assert anchor in anchors(OPERATIONS.read_text()), f"no section {rule['alert']} in {page}"


def test_every_alert_is_named_once() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_rule_is_valid_promql(rule: dict) -> None:
    """Each expression parses as PromQL (promql-parser, the parser of Prometheus's own grammar,
    so no promtool binary is needed); `for` is a duration."""
    assert promql_parser.parse(rule["expr"]).prettify()
    if "for" in rule:
        assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0


def test_a_broken_expression_is_caught() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(autopay_matcher_dead_letters_total[5m]) > 0")
