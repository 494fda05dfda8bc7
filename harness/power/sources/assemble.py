"""Turn raw readings of one GPU into an `EnergySeries`: counter anchors, power for shape, resets, gaps.

The counter is exact but coarse (read every ~0.5 s, and NVML updates it every ~0.1 s); instant power
is fine-grained but only a shape. So between two consecutive counter readings the series follows the
integral of instant power, scaled so that it lands exactly on the next counter reading: the total
over any span between counter readings is the counter's, and the split inside it follows power.
Where there is no power sample the energy is interpolated linearly in time.

Problems are reported in the series' `issues`, never smoothed over: stitched counter resets (the
energy between the last reading before a reset and the reset is lost), gaps longer than a few
reading periods, and a series that does not cover the requested window (stale or late).
"""

from __future__ import annotations

import numpy as np

from harness.power.series import EnergySeries

_GAP_FACTOR = 3.0  # a gap is a spacing above 3x the expected period ...
_GAP_MIN_S = 1.0  # ... and above the expected period plus one second


def _fmt(t_ns: int, origin_ns: int) -> str:
    return f"{(t_ns - origin_ns) / 1e9:+.1f} s"


def stitch_resets(t_ns: np.ndarray, energy_j: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Make a cumulative counter non-decreasing: any decrease is a reset (Prometheus' rule), after
    which the counter restarted from zero, so the value before it is carried forward."""
    drops = np.flatnonzero(np.diff(energy_j) < 0) + 1
    if not len(drops):
        return energy_j, []
    carry = np.zeros(len(energy_j))
    carry[drops] = energy_j[drops - 1]
    return energy_j + np.cumsum(carry), drops.tolist()


def _unique_sorted(t_ns: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort by time; of readings with the same timestamp keep the last."""
    order = np.argsort(t_ns, kind="stable")
    t_sorted = t_ns[order]
    keep = np.ones(len(t_sorted), bool)
    keep[:-1] = t_sorted[1:] != t_sorted[:-1]
    return (t_sorted[keep], *(v[order][keep] for v in values))


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
    known_resets: int = 0,
) -> EnergySeries:
    """One GPU's series from energy readings (already on the harness clock) and optional power samples.

    `known_resets`: resets the producer already stitched (the sidecar's flag); they are reported too.
    `start_ns`/`end_ns`: the window the caller needs; the series keeps the readings that bracket it
    and reports when it does not cover it.
    """
    issues: list[str] = []
    at, ae = _unique_sorted(np.asarray(anchor_t_ns, np.int64), np.asarray(anchor_j, np.float64))
    keep = np.isfinite(ae)
    at, ae = at[keep], ae[keep]
    origin = start_ns if start_ns is not None else (int(at[0]) if len(at) else 0)
    ae, drops = stitch_resets(at, ae)
    for i in drops:
        issues.append(
            f"GPU {gpu}: energy counter reset between {_fmt(at[i - 1], origin)} and {_fmt(at[i], origin)} "
            "(stitched; the energy between the last reading and the reset is missing)"
        )
    if known_resets:
        issues.append(f"GPU {gpu}: {known_resets} energy counter reset(s) stitched by the sidecar")
    for a, b in _gaps(at, expected_period_s):
        issues.append(
            f"GPU {gpu}: gap of {(b - a) / 1e9:.1f} s without energy readings from {_fmt(a, origin)} "
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
                    f"GPU {gpu}: gap of {(b - a) / 1e9:.1f} s without power samples from {_fmt(a, origin)}"
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
