"""The proxy's Prometheus exposition, served on its own port (`--metrics-port`, GET /metrics).

Apart from the proxy's port on purpose: there, GET /metrics is the upstream's own (vLLM's, TGI's),
which `joulebench run --target <proxy>` scrapes through the proxy like any other request.

    joulebench_shape_held_requests          gauge      requests held by the policy now
    joulebench_shape_in_flight_requests     gauge      shaped requests released and not yet ended
    joulebench_shape_requests_total         counter    requests ended, by `outcome` and `shaped`
    joulebench_shape_hold_seconds           histogram  hold (release - arrival) of each released request
    joulebench_shape_info                   gauge (=1) labels `policy` (canonical name), `upstream`
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from harness.shaping_proxy.proxy_log import Exchange

# Holds range from none (passthrough: microseconds) to a window's period or an SLO's slack (seconds).
HOLD_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ProxyMetrics:
    def __init__(
        self, policy: str, upstream: str, held: Callable[[], float], in_flight: Callable[[], float]
    ) -> None:
        self.registry = CollectorRegistry()
        Gauge("joulebench_shape_held_requests", "Requests held by the policy now.",
              registry=self.registry).set_function(held)  # fmt: skip
        Gauge("joulebench_shape_in_flight_requests", "Shaped requests released and not yet ended.",
              registry=self.registry).set_function(in_flight)  # fmt: skip
        self._requests = Counter(
            "joulebench_shape_requests",
            "Requests ended, by outcome (ok, upstream_error, upstream_down, cancelled_while_held, "
            "cancelled, rejected_queue_full, rejected_stopping, rejected_too_large, policy_fault) and "
            "whether shaped.",
            ["outcome", "shaped"],
            registry=self.registry,
        )
        self._hold = Histogram(
            "joulebench_shape_hold_seconds",
            "Hold of each released request: release time minus arrival time.",
            buckets=HOLD_BUCKETS,
            registry=self.registry,
        )
        info = Gauge("joulebench_shape_info", "The proxy's policy and upstream.", ["policy", "upstream"],
                     registry=self.registry)  # fmt: skip
        info.labels(policy=policy, upstream=upstream).set(1)

    def released(self, hold_ns: int) -> None:
        self._hold.observe(hold_ns / 1e9)

    def ended(self, exchange: Exchange) -> None:
        self._requests.labels(outcome=exchange.outcome, shaped=str(exchange.shaped).lower()).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
