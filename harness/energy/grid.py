"""One GPU's energy series cut into the sample intervals the split works on.

Within one interval the only thing known is the energy delta, so power is taken as constant over the
interval. That single assumption is used everywhere: the counter value at a window boundary between
two samples is interpolated linearly, and the interval's energy is spread evenly over its time.

Intervals are cut at the run window and at every arm boundary, so each interval lies wholly inside or
outside every arm window and arm totals are sums of whole intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.power.series import EnergySeries

# A sample interval longer than this many times the series' median interval is a gap: the counter
# delta over it is still right, but where in the gap the energy went is unknown.
GAP_FACTOR = 5.0


@dataclass
class Intervals:
    gpu: str
    tau: np.ndarray  # int64 ns, boundaries (K+1), strictly increasing
    energy: np.ndarray  # float64 J per interval (K), >= 0
    gap: np.ndarray  # bool per interval: inside a gap in the samples
    median_dt_s: float  # median sample interval of the raw series (NaN if < 2 samples)
    repeats: int  # samples dropped because the counter had not moved since the previous one
    gaps: int  # number of gaps in the raw series within the window
    gap_s: float  # total gap time within the window

    @property
    def dt_s(self) -> np.ndarray:
        return np.diff(self.tau).astype(np.float64) / 1e9

    @property
    def total_j(self) -> float:
        return float(self.energy.sum())

    @property
    def covered_s(self) -> float:
        return float(self.tau[-1] - self.tau[0]) / 1e9 if len(self.tau) > 1 else 0.0


def energy_at(series: EnergySeries, t_ns: np.ndarray) -> np.ndarray:
    """Cumulative energy at the given times (linear between samples; NaN outside the series)."""
    t = np.asarray(t_ns, dtype=np.int64)
    if len(series.t_ns) == 0:
        return np.full(len(t), np.nan)
    origin = series.t_ns[0]
    # Offsets from the first sample keep float64 exact to the nanosecond.
    x = (series.t_ns - origin).astype(np.float64)
    out: np.ndarray = np.interp((t - origin).astype(np.float64), x, series.energy_j)
    out[(t < series.t_ns[0]) | (t > series.t_ns[-1])] = np.nan
    return out


def window_energy(series: EnergySeries, start_ns: int, end_ns: int) -> tuple[float, float]:
    """(joules, seconds) over the part of [start, end] the series covers; (nan, 0) if none."""
    if len(series.t_ns) < 2:
        return float("nan"), 0.0
    lo, hi = max(start_ns, int(series.t_ns[0])), min(end_ns, int(series.t_ns[-1]))
    if hi <= lo:
        return float("nan"), 0.0
    e = energy_at(series, np.array([lo, hi]))
    return float(e[1] - e[0]), (hi - lo) / 1e9


def cut(
    series: EnergySeries, start_ns: int, end_ns: int, cuts: np.ndarray, counter_period_s: float = 0.1
) -> Intervals:
    """The series' intervals inside [start, end], cut at `cuts` (e.g. arm boundaries)."""
    t, e = _drop_repeats(series.t_ns, series.energy_j, int(1.5 * counter_period_s * 1e9))
    repeats = len(series.t_ns) - len(t)
    median_dt = float(np.median(np.diff(t))) / 1e9 if len(t) > 1 else float("nan")
    empty = Intervals(
        series.gpu, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool), median_dt, repeats, 0, 0
    )
    if len(t) < 2:
        return empty
    lo, hi = max(start_ns, int(t[0])), min(end_ns, int(t[-1]))
    if hi <= lo:
        return empty
    inner = t[(t > lo) & (t < hi)]
    extra = cuts[(cuts > lo) & (cuts < hi)]
    tau = sorted_unique(np.concatenate([[lo], inner, extra, [hi]]).astype(np.int64))
    cum = energy_at(EnergySeries(series.gpu, t, e), tau)
    energy = np.maximum(np.diff(cum), 0.0)  # interpolation rounding must not create negatives

    raw_gap = np.diff(t) > GAP_FACTOR * np.median(np.diff(t))
    parent = np.searchsorted(t, tau[:-1], side="right") - 1
    gap = raw_gap[np.clip(parent, 0, len(raw_gap) - 1)]
    # Count each raw gap once, by the raw intervals that overlap the window.
    overlaps = (t[1:] > lo) & (t[:-1] < hi)
    gaps = int(np.count_nonzero(raw_gap & overlaps))
    gap_s = float(np.diff(tau)[gap].sum()) / 1e9
    return Intervals(series.gpu, tau, energy, gap, median_dt, repeats, gaps, gap_s)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique without its hash table (numpy 2.x), which is several times slower on 1e8 int64s."""
    x = np.sort(x)
    if len(x) < 2:
        return x
    keep = np.empty(len(x), dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def _drop_repeats(t: np.ndarray, e: np.ndarray, max_lag_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop readings that repeat the counter's value less than `max_lag_ns` after it last changed.

    An energy counter that updates less often than it is read (NVML: about every 100 ms) repeats its
    value; those readings say nothing about *when* the energy was used, and keeping them would make
    intervals of zero power followed by intervals of double power. A value that stays put for longer
    than the update lag is a real pause (or a stuck counter, which then shows as power below idle) and
    its readings are kept. The first and last readings are always kept.
    """
    if len(t) < 3:
        return t, e
    changed = np.ones(len(t), dtype=bool)
    changed[1:] = e[1:] != e[:-1]
    last_change = np.maximum.accumulate(np.where(changed, np.arange(len(t)), 0))
    keep = changed | (t - t[last_change] >= max_lag_ns)
    keep[[0, -1]] = True
    return t[keep], e[keep]
