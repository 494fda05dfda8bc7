"""What the GPUs did beside drawing power, per run and arm: clocks, temperature, power limit, throttling;
and the host's CPU package and DRAM energy (RAPL), reported beside the GPUs' and never mixed into them.

A GPU that throttled (power cap, thermal or hardware slowdown: throttle.py) ran slower than it could,
so what its arm cost is the cost on a capped GPU: `gpu_throttled` says so on the arm. A power limit
that changed during the run means its arms ran on different GPUs, in effect: `power_limit_changed`.
Each throttle share is of the GPU's state readings (about one a second) inside the window.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from harness.energy.flags import GPU_THROTTLED, POWER_LIMIT_CHANGED, FlagList
from harness.energy.throttle import THROTTLE_NAMES, reason_names, throttling
from harness.power.series import HostEnergySeries, StateSeries, Telemetry

Window = tuple[str, int, int]  # (scope name, start_ns, end_ns) on the harness clock


class Range(TypedDict):
    min: float | None
    median: float | None
    max: float | None


class ScopeTelemetry(TypedDict):
    samples: int  # state readings inside the window
    throttle_share: dict[str, float]  # reason name -> share of the readings with it set (any reason seen)
    throttled_share: float | None  # share with any throttling reason (power cap, thermal, slowdown)


class GpuTelemetry(TypedDict):
    gpu: str
    sm_clock_hz: Range
    mem_clock_hz: Range
    temperature_c: Range
    power_limits_w: list[float]  # every enforced limit seen in the run window, in the order seen
    run: ScopeTelemetry
    arms: dict[str, ScopeTelemetry]


class HostDomain(TypedDict):
    name: str
    kind: str  # "package" or "dram"
    zone: str
    run_j: float | None  # None: the domain's readings do not cover the window
    arms: dict[str, float | None]


class HostEnergy(TypedDict):
    available: bool
    note: str | None  # why not (no powercap, unreadable, an older sidecar)
    domains: list[HostDomain]


class TelemetrySummary(TypedDict):
    note: str | None  # why there is no GPU telemetry (the power source was not a sidecar, ...)
    gpus: list[GpuTelemetry]
    host_energy: HostEnergy


def _range(values: np.ndarray) -> Range:
    values = values[np.isfinite(values)]
    if not len(values):
        return {"min": None, "median": None, "max": None}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def _inside(t: np.ndarray, start: int, end: int) -> np.ndarray:
    return np.asarray((t >= start) & (t <= end), dtype=bool)


def _scope(masks: np.ndarray) -> ScopeTelemetry:
    """`masks`: the throttle bitmasks of the readings inside a window (NaN: not reported)."""
    known = [int(m) for m in masks if np.isfinite(m)]
    counts: dict[str, int] = {}
    for mask in known:
        for name in reason_names(mask):
            counts[name] = counts.get(name, 0) + 1
    throttled = sum(1 for m in known if throttling(m))
    return {
        "samples": len(masks),
        "throttle_share": {name: n / len(known) for name, n in sorted(counts.items())},
        "throttled_share": throttled / len(known) if known else None,
    }


def _limits(limits: np.ndarray) -> list[float]:
    seen: list[float] = []
    for value in limits[np.isfinite(limits)].tolist():
        if not seen or value != seen[-1]:
            seen.append(float(value))
    return seen


def gpu_telemetry(series: StateSeries, run: Window, arms: list[Window]) -> GpuTelemetry:
    inside = _inside(series.t_ns, run[1], run[2])
    reasons = series.column("throttle_reasons")
    return {
        "gpu": series.gpu,
        "sm_clock_hz": _range(series.column("sm_clock_hz")[inside]),
        "mem_clock_hz": _range(series.column("mem_clock_hz")[inside]),
        "temperature_c": _range(series.column("temperature_c")[inside]),
        "power_limits_w": _limits(series.column("power_limit_w")[inside]),
        "run": _scope(reasons[inside]),
        "arms": {name: _scope(reasons[_inside(series.t_ns, a, b)]) for name, a, b in arms},
    }


def _energy(series: HostEnergySeries, start: int, end: int) -> float | None:
    t, e = series.t_ns, series.energy_j
    if len(t) < 2 or start < t[0] or end > t[-1]:
        return None
    return float(np.interp(end, t, e) - np.interp(start, t, e))


def host_energy(telemetry: Telemetry, run: Window, arms: list[Window]) -> HostEnergy:
    domains: list[HostDomain] = [
        {
            "name": s.name,
            "kind": s.kind,
            "zone": s.zone,
            "run_j": _energy(s, run[1], run[2]),
            "arms": {name: _energy(s, a, b) for name, a, b in arms},
        }
        for s in telemetry.host
    ]
    return {"available": bool(domains), "note": telemetry.host_note, "domains": domains}


def summarize_telemetry(
    telemetry: Telemetry, run: Window, arms: list[Window], flags: FlagList
) -> TelemetrySummary:
    """The `power.telemetry` section of summary.json; adds `gpu_throttled` per arm (warning) and
    `power_limit_changed` (warning) to `flags`."""
    gpus = [gpu_telemetry(s, run, arms) for s in telemetry.gpus]
    for name, _, _ in arms:
        hit = [
            (g["gpu"], share, g["arms"][name]) for g in gpus if (share := g["arms"][name]["throttled_share"])
        ]
        if hit:
            what = "; ".join(
                f"GPU {gpu} in {share:.0%} of its readings ("
                + ", ".join(f"{r} {s:.0%}" for r, s in scope["throttle_share"].items() if r in THROTTLE_NAMES)
                + ")"
                for gpu, share, scope in hit
            )
            flags.add(
                GPU_THROTTLED,
                "warning",
                f"the GPU throttled: {what}; this arm's energy is that of a capped GPU",
                name,
            )
    for g in gpus:
        if len(g["power_limits_w"]) > 1:
            seen = " → ".join(f"{w:g} W" for w in g["power_limits_w"])
            flags.add(
                POWER_LIMIT_CHANGED,
                "warning",
                f"GPU {g['gpu']}'s enforced power limit changed during the run ({seen}): its arms did "
                "not run on the same GPU",
            )
    return {"note": telemetry.note, "gpus": gpus, "host_energy": host_energy(telemetry, run, arms)}
