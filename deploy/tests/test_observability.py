"""The dashboard and the alert rules: both rule files parse and agree, every expression parses
as PromQL, every metric they name is exported (by the services' metrics modules here, by a
scrape of the dev stack in tests/e2e/test_metrics_scrape.py), and every alert has its section
in docs/operations.md."""

from __future__ import annotations

import importlib
import json
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
DASHBOARD = DEPLOY / "observability" / "dashboard.json"
OPERATIONS = REPO / "docs" / "operations.md"
SERVICE_MODULES = (
    "autopay_gateway",
    "autopay_mail_ingest",
    "autopay_matcher",
    "autopay_notifier",
    "autopay_merchant_bot",
)
EXPORTERS = {
    "jetstream_": "prometheus-nats-exporter",
    "gnatsd_": "prometheus-nats-exporter",
    "redis_": "redis_exporter",
}
"""Metrics not of AutoPay's own: the prefix, and the exporter the dashboard must name."""
GRAFANA_INTERVALS = ("$__rate_interval", "$__interval", "$__range")
"""Grafana's own variables, which Grafana replaces with a duration before Prometheus sees
the query; anything else with a `$` is refused (a template variable the test cannot check)."""

# What the dashboard must show (issue: payments created and paid, confirmation latency,
# mailbox health by state, credits by decision, webhook backlog and failures, consumer lag,
# dead letters, Redis and NATS health, bot alerts), each by the metric that shows it.
DASHBOARD_MUST_SHOW = {
    "autopay_gateway_orders_created_total",
    "autopay_matcher_orders_paid_total",
    "autopay_matcher_confirmation_seconds_bucket",
    "autopay_ingest_mailboxes",
    "autopay_matcher_credits_total",
    "autopay_notifier_backlog_age_seconds",
    "autopay_notifier_attempts_total",
    "jetstream_consumer_num_pending",
    "autopay_matcher_dead_letters_total",
    "redis_up",
    "gnatsd_varz_connections",
    "autopay_bot_alerts_total",
}
# The alerts the issue asks for, at least.
REQUIRED_ALERTS = {
    "AutopayMailboxAuthFailed",
    "AutopayMailboxDown",
    "AutopayMailboxSilent",
    "AutopayWebhookBacklog",
    "AutopayWebhooksExhausted",
    "AutopayConsumerLag",
    "AutopayCreditWithoutDecision",
    "AutopayDeadLetters",
    "AutopayGateway5xx",
    "AutopayExpiredShareHigh",
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gauge": ("",),
}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(container: dict) -> list[dict]:
    """Every panel, those inside rows too."""
    found = []
    for panel in container.get("panels", []):
        found.append(panel)
        found.extend(panels(panel))
    return found


def panel_targets() -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} {target['refId']}", target["expr"])
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
    ]


def as_promql(expr: str) -> str:
    for variable in GRAFANA_INTERVALS:
        expr = expr.replace(variable, "5m")
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, from its syntax tree (so a label name, a
    function or a string in it is not mistaken for a metric)."""
    names: set[str] = set()

    def visit(node) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next(
                (m.value for m in node.matchers.matchers if m.name == "__name__"), None
            )
            assert name, f"a selector without a metric name in {expr!r}"
            names.add(name)
        return True

    promql_parser.walk(promql_parser.parse(as_promql(expr)), visit)
    return names


@cache
def exported_names() -> frozenset[str]:
    """Every sample name the services' metrics modules can expose: each registered family's
    name with its type's suffixes (a labelled family has no sample before its first child)."""
    from prometheus_client import REGISTRY

    for module in SERVICE_MODULES:
        importlib.import_module(f"{module}.metrics")
    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return frozenset(names)


def check_metrics(names: set[str]) -> None:
    ours = {n for n in names if n.startswith("autopay_")}
    assert ours <= exported_names(), f"not exported by any service: {ours - exported_names()}"
    for name in names - ours:
        assert name.startswith(tuple(EXPORTERS)), f"{name}: neither AutoPay's nor an exporter's"


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings: lowercase, punctuation dropped, spaces → dashes."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


# --- alert rules ------------------------------------------------------------------------------


def test_both_rule_files_parse_and_hold_the_same_groups() -> None:
    operator = load(OPERATOR_RULE)
    assert operator["apiVersion"] == "monitoring.coreos.com/v1"
    assert operator["kind"] == "PrometheusRule" and operator["metadata"]["name"]
    assert operator["spec"]["groups"] == load(RULES)["groups"]


def test_the_alerts_the_issue_asks_for_exist() -> None:
    assert {rule["alert"] for rule in rules()} >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_rule_names_exported_metrics_and_has_a_runbook(rule: dict) -> None:
    assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["summary"]
    names = metric_names(rule["expr"])
    assert names, "the rule names no metric"
    check_metrics(names)
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
    so no promtool binary is needed), with no Grafana variable in it; `for` is a duration."""
    assert "$" not in rule["expr"].replace("$labels", "").replace("$value", "")
    assert promql_parser.parse(rule["expr"]).prettify()
    if "for" in rule:
        assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0


# --- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_on_a_prometheus_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 38
    assert board["title"] and board["uid"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for source in (panel["datasource"], *(t["datasource"] for t in panel["targets"])):
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


@pytest.mark.parametrize(("target", "expr"), panel_targets(), ids=lambda v: v)
def test_panel_expression_parses_and_names_exported_metrics(target: str, expr: str) -> None:
    assert "$" not in as_promql(expr), f"{target}: a template variable the test cannot check"
    assert promql_parser.parse(as_promql(expr)).prettify()
    names = metric_names(expr)
    assert names, f"{target} names no metric"
    check_metrics(names)


def test_the_dashboard_shows_what_the_issue_asks_for_and_names_its_exporters() -> None:
    board = dashboard()
    shown = set().union(*(metric_names(expr) for _, expr in panel_targets()))
    assert shown >= DASHBOARD_MUST_SHOW, DASHBOARD_MUST_SHOW - shown
    for prefix, exporter in EXPORTERS.items():
        if any(name.startswith(prefix) for name in shown):
            assert exporter in board["description"], f"{prefix}* needs {exporter} named"


# --- the checks can fail ----------------------------------------------------------------------


def test_a_broken_expression_is_caught() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(autopay_matcher_dead_letters_total[5m]) > 0")


def test_a_metric_no_service_exports_is_caught() -> None:
    assert metric_names('sum by (state) (autopay_ingest_mailboxes{state="down"})') == {
        "autopay_ingest_mailboxes"
    }
    with pytest.raises(AssertionError, match="autopay_matcher_credit_total"):
        check_metrics(metric_names("rate(autopay_matcher_credit_total[5m])"))
    with pytest.raises(AssertionError, match="neither"):
        check_metrics({"node_load1"})
