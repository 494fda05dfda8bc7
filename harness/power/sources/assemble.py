"""Turn raw readings of one GPU into an `EnergySeries`: counter anchors, power for shape, resets, gaps.

The counter is exact but coarse (read every ~0.5 s, and NVML updates it every ~0.1 s); instant power
is fine-grained but only a shape. So between two consecutive counter readings the series follows the
integral of instant power, scaled so that it lands exactly on the next counter reading: the total
over any span between counter readings is the counter's, and the split inside it follows power.
Where there is no power sample the energy is interpolated linearly in time.

Problems are reported in the series' `issues`, never smoothed over: stitched counter resets (the
energy between the last reading before a reset and the reset is lost), counter readings dropped as
bad reads (a lone drop between consistent readings, values that are not a number or negative), gaps
longer than a few reading periods, and a series that does not cover the requested window (stale or
late). Resets and bad reads are told apart by the sidecar's own rule (gpu_backend.CounterRule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness.power.gpu_backend import MAX_GPU_POWER_W, CounterRule
from harness.power.series import EnergySeries

_GAP_FACTOR = 3.0  # a gap is a spacing above 3x the expected period ...
_GAP_MIN_S = 1.0  # ... and above the expected period plus one second


def fmt_t(t_ns: int, origin_ns: int) -> str:
    return f"{(t_ns - origin_ns) / 1e9:+.1f} s"


_DROPPED = {
    "invalid": "not a number, infinite or negative",
    "glitch": "each a lone drop below the readings around it: a bad read, not a reset",
    "unconfirmed": "below the reading before it, with no later one to tell a reset from a bad read",
}


@dataclass
class Stitched:
    """A counter made non-decreasing: the readings kept, their stitched values, what was done."""

    t_ns: np.ndarray
    energy_j: np.ndarray
    restarts: list[tuple[int, str]] = field(default_factory=list)  # (index in t_ns, "reset" | "jump")
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (t_ns, why) of readings left out


def stitch_resets(t_ns: np.ndarray, energy_j: np.ndarray) -> Stitched:
    """Make a cumulative counter (sorted by time) non-decreasing by the sidecar's rule: a drop is held
    until the next reading says reset (stitched, carrying the count before it) or bad read (dropped).

    Readers know no power limit and may read a sped-up simulation, so any rise is consistent
    (`strict=False`); the largest GPU's draw only says what "near zero" is after a drop."""
    t_ns, energy_j = np.asarray(t_ns, np.int64), np.asarray(energy_j, np.float64)
    if np.all(np.diff(energy_j) >= 0) and not np.any(~np.isfinite(energy_j) | (energy_j < 0)):
        return Stitched(t_ns, energy_j)  # the usual case, and the sidecar's rows: nothing to decide
    rule = CounterRule(strict=False)
    out = Stitched(np.empty(0, np.int64), np.empty(0))
    kept: list[tuple[int, float, str | None]] = []
    for t, v in zip(t_ns.tolist(), energy_j.tolist(), strict=True):
        step = rule.push(t, v, MAX_GPU_POWER_W)
        kept += step.kept
        out.dropped += step.dropped
    out.dropped += rule.finish().dropped
    out.t_ns = np.array([k[0] for k in kept], np.int64)
    out.energy_j = np.array([k[1] for k in kept], np.float64)
    out.restarts = [(i, k[2]) for i, k in enumerate(kept) if k[2] is not None]
    return out


def _unique_sorted(t_ns: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by time; of readings with the same timestamp keep the last."""
    order = np.argsort(t_ns, kind="stable")
    t_sorted = t_ns[order]
    keep = np.ones(len(t_sorted), bool)
    keep[:-1] = t_sorted[1:] != t_sorted[:-1]
    return (t_sorted[keep], *(v[order][keep] for v in values))


def dropped_issues(
    gpu: str, what: str, dropped: list[tuple[int, str]], reasons: dict[str, str], origin: int
) -> list[str]:
    """One issue per reason for readings left out: how many, why, and when."""
    out = []
    for why, text in reasons.items():
        times = sorted(t for t, w in dropped if w == why)
        if times:
            when = fmt_t(times[0], origin) + (f" to {fmt_t(times[-1], origin)}" if len(times) > 1 else "")
            out.append(f"GPU {gpu}: {len(times)} {what} reading(s) left out, at {when}: {text}")
    return out


def _gaps(t_ns: np.ndarray, expected_s: float | None) -> list[tuple[int, int]]:
    if len(t_ns) < 2:
        return []
    spacing = np.diff(t_ns)
    period_ns = expected_s * 1e9 if expected_s else float(np.median(spacing))
    limit = max(_GAP_FACTOR * period_ns, period_ns + _GAP_MIN_S * 1e9)
    return [(int(t_ns[i]), int(t_ns[i + 1])) for i in np.flatnonzero(spacing > limit)]


def _shape(at: np.ndarray, ae: np.ndarray, pt: np.ndarray, pw: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fill power sample times between counter readings (see the module docstring)."""
    inside = (pt > at[0]) & (pt < at[-1])
    grid = np.union1d(at, pt[inside])
    p_grid = np.interp(grid, pt, np.clip(pw, 0.0, None))
    integral = np.concatenate([[0.0], np.cumsum((p_grid[1:] + p_grid[:-1]) / 2 * np.diff(grid) / 1e9)])
    pos = np.searchsorted(grid, at)
    seg = np.clip(np.searchsorted(at, grid, side="right") - 1, 0, len(at) - 2)
    i_a, i_b = integral[pos[seg]], integral[pos[seg + 1]]
    d_integral = i_b - i_a
    time_frac = (grid - at[seg]) / (at[seg + 1] - at[seg])
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(d_integral > 0, (integral - i_a) / d_integral, time_frac)
    energy = ae[seg] + (ae[seg + 1] - ae[seg]) * np.clip(frac, 0.0, 1.0)
    energy[pos] = ae  # exact at every counter reading
    power = np.where((grid >= pt[0]) & (grid <= pt[-1]), p_grid, np.nan)
    return grid, energy, power


def build_series(
    gpu: str,
    anchor_t_ns: np.ndarray,
    anchor_j: np.ndarray,
    power_t_ns: np.ndarray | None = None,
    power_w: np.ndarray | None = None,
    *,
    source: str,
    uuid: str | None = None,
    name: str | None = None,
    integrated: bool = False,
    expected_period_s: float | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> EnergySeries:
    """One GPU's series from energy readings (already on the harness clock) and optional power samples.

    `start_ns`/`end_ns`: the window the caller needs; the series keeps the readings that bracket it
    and reports when it does not cover it. Resets and dropped readings are reported where they touch
    the window.
    """
    issues: list[str] = []
    at, ae = _unique_sorted(np.asarray(anchor_t_ns, np.int64), np.asarray(anchor_j, np.float64))
    origin = start_ns if start_ns is not None else (int(at[0]) if len(at) else 0)
    stitched = stitch_resets(at, ae)
    at, ae = stitched.t_ns, stitched.energy_j
    lo = -(2**63) if start_ns is None else start_ns
    hi = 2**63 - 1 if end_ns is None else end_ns
    for i, restart in stitched.restarts:
        if at[i] <= lo or at[i - 1] >= hi:  # the span it cost lies outside the window
            continue
        span = f"between {fmt_t(at[i - 1], origin)} and {fmt_t(at[i], origin)}"
        issues.append(
            f"GPU {gpu}: energy counter reset {span} (stitched; the energy between the last reading and "
            "the reset is missing)"
            if restart == "reset"
            else f"GPU {gpu}: energy counter jumped to another level {span} (not a restart from zero: "
            "continued from the last value; the energy between the two readings is missing)"
        )
    dropped = [(t, why) for t, why in stitched.dropped if lo <= t <= hi]
    issues += dropped_issues(gpu, "energy counter", dropped, _DROPPED, origin)
    for a, b in _gaps(at, expected_period_s):
        issues.append(
            f"GPU {gpu}: gap of {(b - a) / 1e9:.1f} s without energy readings from {fmt_t(a, origin)} "
            "(energy there is interpolated)"
        )

    power = None
    if power_t_ns is not None and power_w is not None and len(power_t_ns) and len(at) >= 2:
        pt, pw = _unique_sorted(np.asarray(power_t_ns, np.int64), np.asarray(power_w, np.float64))
        keep = np.isfinite(pw)
        pt, pw = pt[keep], pw[keep]
        if len(pt):
            for a, b in _gaps(pt[(pt >= at[0]) & (pt <= at[-1])], None):
                issues.append(
                    f"GPU {gpu}: gap of {(b - a) / 1e9:.1f} s without power samples from {fmt_t(a, origin)}"
                )
            at, ae, power = _shape(at, ae, pt, pw)

    if len(at):
        lo = 0 if start_ns is None else max(0, int(np.searchsorted(at, start_ns, side="right")) - 1)
        hi = len(at) if end_ns is None else min(len(at), int(np.searchsorted(at, end_ns, side="left")) + 1)
        at, ae = at[lo:hi], ae[lo:hi]
        power = None if power is None else power[lo:hi]
    slack_ns = max(2.0 * (expected_period_s or 1.0), 1.0) * 1e9
    if not len(at):
        issues.append(f"GPU {gpu}: no energy readings in the requested window")
    else:
        if start_ns is not None and at[0] > start_ns + slack_ns:
            issues.append(
                f"GPU {gpu}: the first reading is {(at[0] - start_ns) / 1e9:.1f} s after the window start"
            )
        if end_ns is not None and at[-1] < end_ns - slack_ns:
            issues.append(
                f"GPU {gpu}: stale: the last reading is {(end_ns - at[-1]) / 1e9:.1f} s before the window end"
            )
    return EnergySeries(
        gpu=gpu,
        t_ns=at,
        energy_j=ae,
        power_w=power,
        uuid=uuid,
        name=name,
        integrated=integrated,
        source=source,
        issues=issues,
    )
