"""Power from a Prometheus that already scrapes NVIDIA's dcgm-exporter (what many platform teams run).

- Energy: `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` (counter, mJ since driver load) → joules, resets
  stitched. Fallback for GPUs without it: `DCGM_FI_DEV_POWER_USAGE` (W) integrated over time
  (labelled integrated; on Ampere and newer it is a lagging 1 s average, so short windows are off).
- Times: each value is placed where it first appeared in the scrapes (`timestamp()` of the sample;
  repeated values are the same reading scraped again). dcgm-exporter collects every 30 s by default
  (`-c`), so a value can be that old when scraped: the collection period is reported.
- Identity: labels `gpu`, `UUID`, `modelName`, `Hostname` (`hostname` in newer exporters). In MIG mode,
  and with Kubernetes pod
  attribution, the exporter repeats a GPU's metrics with extra labels (`GPU_I_ID`, `pod`, ...): those
  series are merged back into one per physical GPU.
"""

from __future__ import annotations

import numpy as np

from foundation.redact import redact_userinfo
from harness.power.series import PowerData
from harness.power.sources.assemble import build_series
from harness.power.sources.promapi import pair, with_selector
from harness.power.sources.prometheus import PrometheusBase, one_per_gpu

ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER = "DCGM_FI_DEV_POWER_USAGE"
# Labels that name the physical GPU and where it was scraped; all others (MIG instance, pod,
# container, namespace, ...) vary for the same GPU.
_GPU_LABELS = ("instance", "job", "Hostname", "hostname", "gpu", "UUID")
_SLOW_PERIOD_S = 2.0


def _merge(parts: list[tuple[dict, np.ndarray, np.ndarray]], counter: bool) -> tuple[np.ndarray, np.ndarray]:
    """One (time, value) series from several series of the same GPU; the largest value at a time wins
    (MIG copies of the counter are collected at slightly different moments). For the counter, a value
    scraped again is the same reading: keep the time it first appeared. (Power repeats are kept: a
    steady power is read again with the same value.)"""
    t = np.concatenate([p[1] for p in parts])
    v = np.concatenate([p[2] for p in parts])
    order = np.lexsort((v, t))
    t, v = t[order], v[order]
    last = np.ones(len(t), bool)
    last[:-1] = t[1:] != t[:-1]
    t, v = t[last], v[last]
    if not counter:
        return t, v
    first = np.ones(len(v), bool)
    first[1:] = v[1:] != v[:-1]
    return t[first], v[first]


def _change_period_s(t_s: np.ndarray) -> float | None:
    return float(np.median(np.diff(t_s))) if len(t_s) > 2 else None


class DcgmSource(PrometheusBase):
    name = "dcgm"

    def _grouped(self, metric: str, w) -> dict[tuple, list[tuple[dict, np.ndarray, np.ndarray]]]:
        expr = with_selector(metric, self.selector)
        values = self.api.query_range(expr, w.q_start_s, w.q_end_s, self.step_s)
        times = self.api.query_range(f"timestamp({expr})", w.q_start_s, w.q_end_s, self.step_s)
        groups: dict[tuple, list] = {}
        for labels, read_t, value in pair(values, times):
            key = tuple((k, labels.get(k, "")) for k in _GPU_LABELS)
            groups.setdefault(key, []).append((labels, read_t, value))
        return groups

    def read(self, start_ns: int | None = None, end_ns: int | None = None) -> PowerData:
        w = self.window(start_ns, end_ns)
        energy = self._grouped(ENERGY, w)
        power = self._grouped(POWER, w)
        issues: list[str] = []
        keys = sorted(set(energy) | set(power), key=lambda k: (dict(k)["gpu"].zfill(4), k))
        gpu_of = {key: dict(key)["gpu"] or "?" for key in keys}
        one_per_gpu(dict.fromkeys(keys), gpu_of, self.api.url, ENERGY)
        if not keys:
            issues.append(f"{self.api.url}: no {ENERGY} or {POWER} series in the window")
        series = []
        for key in keys:
            gpu = gpu_of[key]
            parts = energy.get(key) or power[key]
            labels = parts[0][0]
            t_s, values = _merge(parts, counter=key in energy)
            notes: list[str] = []
            if len(parts) > 1:
                notes.append(
                    f"GPU {gpu}: merged {len(parts)} dcgm series of one GPU (MIG instances or pod labels)"
                )
            period = _change_period_s(t_s)
            if key in energy and period is not None and period > _SLOW_PERIOD_S:
                notes.append(
                    f"GPU {gpu}: dcgm values change only every ~{period:.0f} s (dcgm-exporter's collection "
                    "interval): readings can be that much older than their scrape; windows of a few "
                    "periods or less are poorly resolved"
                )
            if key in energy:
                t_ns, energy_j, integrated = self.to_ours(t_s), values / 1000.0, False  # mJ → J
            else:
                # No counter: integrate power (trapezoids between readings).
                t_ns = self.to_ours(t_s)
                steps = (values[1:] + values[:-1]) / 2 * np.diff(t_ns) / 1e9
                energy_j, integrated = np.concatenate([[0.0], np.cumsum(steps)]), True
                notes.append(
                    f"GPU {gpu}: no {ENERGY}; energy integrates {POWER} (a ~1 s average on Ampere and newer)"
                )
            s = build_series(
                gpu,
                t_ns,
                energy_j,
                source="dcgm",
                uuid=labels.get("UUID") or None,
                name=labels.get("modelName") or None,
                integrated=integrated,
                expected_period_s=period,
                start_ns=w.start_ns,
                end_ns=w.end_ns,
            )
            s.issues[:0] = notes
            series.append(s)
        return PowerData(
            series=series,
            source=f"dcgm via prometheus {redact_userinfo(self.api.url)}",
            clock=self.clock("Prometheus scrape timestamps (epoch)"),
            issues=issues,
        )
