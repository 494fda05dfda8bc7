"""The power data contract between the readers (sidecar, Prometheus, dcgm-exporter) and the energy join.

Every reader returns a `PowerData`: per GPU, a cumulative energy series on the *harness's* monotonic
clock. Readers do the clock mapping (same kernel: monotonic times as they are; another host: epoch
times shifted by the estimated offset) and stitch counter resets, so the join sees one non-decreasing
series per GPU. What they could not fix (gaps, resets, stale series) they report in `issues`, never
smooth over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EnergySeries:
    gpu: str  # GPU index as the source labels it ("0", "1", ...)
    t_ns: np.ndarray  # int64, harness monotonic clock, strictly increasing
    energy_j: np.ndarray  # float64, cumulative joules since an arbitrary origin, non-decreasing
    power_w: np.ndarray | None = None  # float64 instant power at t_ns (shape only; NaN where unknown)
    uuid: str | None = None
    name: str | None = None
    integrated: bool = False  # True when energy_j integrates power (no hardware counter)
    source: str = ""  # "sidecar", "prometheus", "dcgm", ...
    issues: list[str] = field(default_factory=list)
    # Reads that failed at the source inside the window (the sidecar's rows say so; other sources and
    # power.parquet do not keep it: the report counts them again from the run's raw sidecar samples).
    failed_reads: int = 0

    def __post_init__(self) -> None:
        self.t_ns = np.asarray(self.t_ns, dtype=np.int64)
        self.energy_j = np.asarray(self.energy_j, dtype=np.float64)
        if self.power_w is not None:
            self.power_w = np.asarray(self.power_w, dtype=np.float64)
        if self.t_ns.shape != self.energy_j.shape:
            raise ValueError(f"GPU {self.gpu}: t_ns and energy_j differ in length")
        if len(self.t_ns) > 1 and np.any(np.diff(self.t_ns) <= 0):
            raise ValueError(f"GPU {self.gpu}: t_ns is not strictly increasing")
        if len(self.energy_j) > 1 and np.any(np.diff(self.energy_j) < 0):
            raise ValueError(f"GPU {self.gpu}: energy_j decreases (resets must be stitched by the reader)")


# The GPU telemetry a state row carries (GpuState's names and units; the sample log's `state_columns`).
STATE_COLUMNS = ("sm_clock_hz", "mem_clock_hz", "temperature_c", "power_limit_w", "throttle_reasons")


@dataclass
class StateSeries:
    """One GPU's telemetry, about once a second: `values[:, i]` is STATE_COLUMNS[i] (NaN: not reported)."""

    gpu: str
    t_ns: np.ndarray  # int64, harness monotonic clock, sorted
    values: np.ndarray  # float64, (len(t_ns), len(STATE_COLUMNS))

    def column(self, name: str) -> np.ndarray:
        return np.asarray(self.values[:, STATE_COLUMNS.index(name)], dtype=np.float64)


@dataclass
class HostEnergySeries:
    """A RAPL domain's cumulative energy (CPU package or DRAM), wraparound stitched by the sidecar."""

    name: str  # the zone's name ("package-0", "dram")
    kind: str  # "package" or "dram"
    zone: str  # "intel-rapl:0", ...
    t_ns: np.ndarray  # int64, harness monotonic clock, sorted
    energy_j: np.ndarray  # float64


@dataclass
class Telemetry:
    """What the power source said beside power: GPU state and host energy (the sidecar's sample log)."""

    gpus: list[StateSeries]
    host: list[HostEnergySeries]
    host_note: str | None  # why there is no host energy (no RAPL, unreadable, an older sidecar)
    note: str | None = None  # why there is no telemetry at all (not a sidecar, no samples)


@dataclass
class PowerData:
    series: list[EnergySeries]
    source: str
    # How times were mapped: {"mode": "same-host"|"offset", ...}
    clock: dict[str, Any] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)  # source-level problems (unreachable, stale, ...)

    def select_gpus(self, gpus: Sequence[str] | None, where: str) -> PowerData:
        """Only the series of `gpus` (None: all), and an issue for each one `where` had no series of."""
        if gpus is None:
            return self
        have = [s.gpu for s in self.series]
        missing = [f"{where}: no series for GPU {g} (selected with --gpus)" for g in gpus if g not in have]
        return PowerData([s for s in self.series if s.gpu in gpus], self.source, self.clock,
                         [*self.issues, *missing])  # fmt: skip
