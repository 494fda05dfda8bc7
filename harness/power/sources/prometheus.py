"""Power from a Prometheus that scrapes the joulebench sidecar (`joulebench_gpu_energy_joules_total`).

Each counter value is placed at the time the sidecar read it (`joulebench_gpu_energy_read_timestamp_seconds`,
scraped with it), not at the scrape time, which can be up to a counter period later. Resolution is
the scrape interval (1 s in deploy/prometheus/prometheus.yml); for finer attribution read the
sidecar's sample log instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from foundation.errors import InputError
from foundation.redact import redact_userinfo
from harness.clock import ClockAnchor
from harness.power.clocksync import ClockOffset
from harness.power.series import PowerData
from harness.power.sources.assemble import build_series
from harness.power.sources.promapi import PrometheusAPI, epoch_s_to_ns, pair, with_selector

DEFAULT_SPAN_S = 3600.0


@dataclass
class QueryWindow:
    """The requested window on our monotonic clock and the (wider) epoch range to query."""

    start_ns: int
    end_ns: int
    q_start_s: float
    q_end_s: float


class PrometheusBase:
    name = "prometheus"

    def __init__(
        self,
        url: str,
        *,
        selector: str = "",
        step_s: float = 1.0,
        anchor: ClockAnchor | None = None,
        offset: ClockOffset | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        if step_s < 0.001:  # Prometheus resolves steps to whole milliseconds
            raise InputError(f"prometheus step: expected at least 0.001 s, got {step_s}")
        self.api = PrometheusAPI(url, client)
        self.selector = selector
        self.step_s = step_s
        self.anchor = anchor or ClockAnchor.now()
        # Prometheus times are epoch times (the sidecar's clock for read timestamps, the Prometheus
        # server's for scrape timestamps); an offset measured against that host corrects them.
        self.offset = offset
        with_selector("up", selector)  # validate now, not at the first read

    def window(self, start_ns: int | None, end_ns: int | None) -> QueryWindow:
        end_ns = time.monotonic_ns() if end_ns is None else end_ns
        start_ns = end_ns - int(DEFAULT_SPAN_S * 1e9) if start_ns is None else start_ns
        # Widen so the readings that bracket the window are included.
        margin_s = max(5.0, 3 * self.step_s)
        return QueryWindow(
            start_ns=start_ns,
            end_ns=end_ns,
            q_start_s=self.anchor.to_epoch_ns(start_ns) / 1e9 - margin_s,
            q_end_s=self.anchor.to_epoch_ns(end_ns) / 1e9 + margin_s,
        )

    def to_ours(self, epoch_s: np.ndarray) -> np.ndarray:
        shift = self.offset.epoch_offset_ns if self.offset else 0
        return epoch_s_to_ns(epoch_s) + shift - (self.anchor.epoch_ns - self.anchor.mono_ns)

    def clock(self, what: str) -> dict[str, Any]:
        if self.offset:
            return {"mode": "offset", "times": what, **self.offset.as_dict()}
        return {"mode": "epoch", "times": what, "note": "assumes that host's clock agrees with ours (NTP)"}


def one_per_gpu(groups: dict[tuple, Any], gpu_of: dict[tuple, str], where: str, metric: str) -> None:
    """Two groups with the same GPU index are two hosts (or two scrape jobs): ask for a selector."""
    seen: dict[str, tuple] = {}
    for key in groups:
        gpu = gpu_of[key]
        if gpu in seen:
            raise InputError(
                f"{where}: several {metric} series for GPU {gpu} ({dict(seen[gpu])} and {dict(key)}); "
                'narrow them with a selector such as instance="host:9400"'
            )
        seen[gpu] = key


class PrometheusSource(PrometheusBase):
    """Our sidecar's counter, as scraped by Prometheus."""

    ENERGY = "joulebench_gpu_energy_joules_total"
    READ_TIME = "joulebench_gpu_energy_read_timestamp_seconds"

    def read(self, start_ns: int | None = None, end_ns: int | None = None) -> PowerData:
        w = self.window(start_ns, end_ns)
        energy = self.api.query_range(
            with_selector(self.ENERGY, self.selector), w.q_start_s, w.q_end_s, self.step_s
        )
        times = self.api.query_range(
            with_selector(self.READ_TIME, self.selector), w.q_start_s, w.q_end_s, self.step_s
        )
        issues: list[str] = []
        groups: dict[tuple, list[tuple[dict, np.ndarray, np.ndarray]]] = {}
        for labels, read_t, value in pair(energy, times, drop=("method",)):
            key = tuple(sorted((k, v) for k, v in labels.items() if k in ("instance", "job", "gpu", "uuid")))
            groups.setdefault(key, []).append((labels, read_t, value))
        gpu_of = {key: dict(key).get("gpu", "?") for key in groups}
        one_per_gpu(groups, gpu_of, self.api.url, self.ENERGY)
        if not groups:
            where = f" matching {self.selector}" if self.selector else ""
            issues.append(f"{self.api.url}: no {self.ENERGY} series{where} in the window")
        series = []
        for key, parts in sorted(groups.items(), key=lambda kv: gpu_of[kv[0]]):
            labels = parts[0][0]
            # A change of method (the counter vanished) makes a second series: keep them together.
            t = np.concatenate([self.to_ours(p[1]) for p in parts])
            e = np.concatenate([p[2] for p in parts])
            series.append(
                build_series(
                    gpu_of[key],
                    t,
                    e,
                    source="prometheus",
                    uuid=labels.get("uuid") or None,
                    integrated=any(p[0].get("method") == "integrated" for p in parts),
                    start_ns=w.start_ns,
                    end_ns=w.end_ns,
                )
            )
        return PowerData(
            series=series,
            source=f"prometheus {redact_userinfo(self.api.url)}",
            clock=self.clock("sidecar read timestamps (epoch)"),
            issues=issues,
        )
