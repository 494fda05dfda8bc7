"""How the Prometheus power sources' times map onto the run's clock.

Prometheus hands back epoch times from another process's clock: the sidecar's (`joulebench_gpu_
energy_read_timestamp_seconds`, our counter) or the Prometheus server's (scrape times, dcgm-exporter).
Mapping them through epoch time assumes the clocks agree; where we can, we measure instead:

- our counter: the sidecar exports its kernel's `boot_id` (`joulebench_sidecar_info`). The same
  `boot_id` as ours means the same kernel, hence the same epoch clock: offset 0, exactly. Otherwise,
  when the sidecar's URL is known (`--sidecar`), its `/time` endpoint gives the offset.
- dcgm-exporter: the Prometheus server's clock, probed NTP-style with the query `time()` (evaluated
  at the server's "now" when no time is given); good to half the best round trip plus Prometheus'
  millisecond resolution.

Without either, the source reports clock mode "epoch", which the join flags (`clock_unmeasured`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.power.clocksync import ClockOffset, estimate_clock_offset
from harness.power.sources.promapi import PrometheusAPI, with_selector

SIDECAR_INFO = "joulebench_sidecar_info"


@dataclass(frozen=True)
class SidecarInfo:
    """What Prometheus knows about the sidecars it scrapes (label sets of `joulebench_sidecar_info`)."""

    boot_ids: frozenset[str]
    backends: frozenset[str]


def sidecar_info(url: str, selector: str, client: httpx.Client | None = None) -> SidecarInfo:
    rows = PrometheusAPI(url, client, timeout_s=10.0).query(with_selector(SIDECAR_INFO, selector))
    labels = [r.get("metric", {}) for r in rows]
    return SidecarInfo(
        boot_ids=frozenset(m.get("boot_id", "") for m in labels),
        backends=frozenset(m.get("backend", "") for m in labels),
    )


def counter_clock(
    info: SidecarInfo, anchor: ClockAnchor, sidecar_url: str | None = None, client: httpx.Client | None = None
) -> ClockOffset | None:
    """The offset for our counter's read timestamps (sidecar epoch clock), or None when unmeasurable."""
    if len(info.boot_ids) != 1:
        return None  # no sidecar seen, or several hosts: no single offset applies
    (remote,) = info.boot_ids
    if remote and remote == anchor.boot_id:
        # One kernel, one epoch clock: the mapping is exact (nothing was probed, nothing is uncertain).
        return ClockOffset(0, 0, 0, remote_boot_id=remote, same_kernel=True)
    if sidecar_url is not None:
        offset = estimate_clock_offset(sidecar_url, anchor, client=client)
        if offset.remote_boot_id == remote:
            return offset
    return None


def prometheus_clock(
    url: str, anchor: ClockAnchor, probes: int = 5, client: httpx.Client | None = None
) -> ClockOffset:
    """The Prometheus server's epoch offset, from `time()` evaluated at its now (NTP-style probes)."""
    own = client or httpx.Client(timeout=10.0)
    base = url.rstrip("/")
    best: tuple[int, int] | None = None  # round trip, epoch offset
    try:
        api = PrometheusAPI(base, own)
        api.query("time()")  # the first request pays for the connection
        for _ in range(probes):
            m0 = time.monotonic_ns()
            rows = api.query("time()")
            m1 = time.monotonic_ns()
            server_ns = round(float(rows[1]) * 1e9) if isinstance(rows, list) and len(rows) == 2 else None
            if server_ns is None:
                raise InputError(f"{base}: time() returned {rows!r}, expected a scalar")
            probe = (m1 - m0, anchor.to_epoch_ns((m0 + m1) // 2) - server_ns)
            if best is None or probe[0] < best[0]:
                best = probe
    finally:
        if client is None:
            own.close()
    assert best is not None
    rtt, epoch_offset = best
    # Prometheus reports times in whole milliseconds: widen the round trip by that resolution.
    return ClockOffset(0, epoch_offset, rtt + 1_000_000, remote_boot_id="", same_kernel=False)
