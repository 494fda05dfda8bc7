"""Power sources for the energy join: one interface, several places the data can come from.

Every source has `read(start_ns=None, end_ns=None) -> PowerData` (harness/power/series.py): per GPU a
cumulative energy series on the harness's monotonic clock, resets stitched, problems in `issues`.

- `SidecarSource(url_or_file)` — the sidecar's high-rate sample log (`/samples` or a `--log` file);
  call `poll()` every few seconds during a run, `save(path)` to keep the raw rows.
- `PrometheusSource(url)` — our counter as scraped by Prometheus.
- `DcgmSource(url)` — a Prometheus that scrapes NVIDIA's dcgm-exporter.

`open_source("sidecar=http://host:9400")` builds one from a `KIND=LOCATION` spec (a CLI flag value).
"""

from __future__ import annotations

from typing import Protocol

import httpx

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.power.clocksync import ClockOffset, estimate_clock_offset
from harness.power.series import PowerData
from harness.power.sources.dcgm import DcgmSource
from harness.power.sources.prometheus import PrometheusSource
from harness.power.sources.sidecar_samples import SidecarSource

__all__ = [
    "ClockOffset",
    "DcgmSource",
    "PowerSource",
    "PrometheusSource",
    "SidecarSource",
    "estimate_clock_offset",
    "open_source",
]

KINDS = ("sidecar", "prometheus", "dcgm")


class PowerSource(Protocol):
    name: str

    def read(self, start_ns: int | None = None, end_ns: int | None = None) -> PowerData: ...


def open_source(
    spec: str,
    *,
    anchor: ClockAnchor | None = None,
    selector: str = "",
    step_s: float = 1.0,
    client: httpx.Client | None = None,
) -> PowerSource:
    """`sidecar=URL|FILE`, `prometheus=URL` or `dcgm=URL` (the URL of the Prometheus server).

    `anchor` is the harness's clock anchor (the run's), `selector` narrows Prometheus series
    (e.g. `instance="gpu-host:9400"`), `step_s` is the Prometheus query resolution.
    """
    kind, eq, location = spec.partition("=")
    if not eq or kind not in KINDS or not location:
        raise InputError(f"power source {spec!r}: expected KIND=LOCATION with KIND one of {', '.join(KINDS)}")
    if kind == "sidecar":
        if selector:
            raise InputError("power source: a selector only applies to prometheus and dcgm sources")
        return SidecarSource(location, anchor=anchor, client=client)
    cls = PrometheusSource if kind == "prometheus" else DcgmSource
    return cls(location, selector=selector, step_s=step_s, anchor=anchor, client=client)
