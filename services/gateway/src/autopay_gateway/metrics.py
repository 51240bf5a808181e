"""Prometheus metrics of the gateway (served on `AUTOPAY_METRICS_PORT`, never the public port).

Label values come from fixed sets only: the method from `METHODS` (else `other`), the route a
template of the app's own routes (else `unmatched`), the status an HTTP code, the order's
world `live` or `test`. Never an order id, a merchant id or an e-mail.
"""

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "autopay_gateway_requests_total",
    "HTTP requests by method, route template and status code",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "autopay_gateway_request_duration_seconds",
    "HTTP request duration by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ORDERS_CREATED = Counter(
    "autopay_gateway_orders_created_total",
    "Payments created (order.created acknowledged by JetStream), by world: live or test",
    ["mode"],
)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""The method label's values: any other method a client sends is counted as `other`, so no
client can add series (the route label is a template or `unmatched`, the status a code)."""

MODES = ("live", "test")

# Every label value exists from the start, so rates and ratios see a 0 before the first order.
for _mode in MODES:
    ORDERS_CREATED.labels(mode=_mode)


def order_created(test_mode: bool) -> None:
    ORDERS_CREATED.labels(mode="test" if test_mode else "live").inc()
