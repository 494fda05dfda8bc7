"""How far a GPU's power series trails the requests, estimated per run and per GPU, and the shift that
corrects it.

NVML's instant power is a short average that the driver publishes after the fact, and its energy
counter updates every ~100 ms: both report a request's power some time after the request drew it. Left
alone, the `time` split hands the tail of each request's energy to whatever follows it (on a sparse
schedule, the idle gap). The join therefore shifts each GPU's series earlier by its estimated lag
before cutting it (`correct`): timestamps move, energies do not, so every conservation identity holds
as before on the shifted series.

Method (`busy-xcorr`): per power sample, whether any request was in flight `L` seconds earlier; the lag
is the `L` in `SEARCH_S` that maximises the correlation of instant power with that indicator, both
centred within each arm window (arms differ in mean power for reasons other than lag), on a 5 ms grid
refined by a parabola through the peak. The indicator, not the count in flight: batching saturates
power after a few requests, so the count's variance sits mostly where power no longer follows it.
What only the edges between idle and busy can tell, the indicator carries, and a run with fewer than
`MIN_TRANSITIONS` of them (a GPU busy throughout, or one burst) or a peak correlation under
`MIN_PEAK_R` has no estimate. Stability: the samples before and after the middle edge (halves of the
evidence, not of the time) are estimated apart; halves `SPREAD_LIMIT_S` or more apart, a half without
an estimate of its own, or a peak at the search range's edge make the estimate unstable, and `auto`
then applies none and flags `power_lag_unstable`. A periodic schedule correlates as well one period
later: of peaks within `ALIAS_RATIO` of the highest, the shortest lag from `NOT_BEFORE_S` on is taken
(a sensor's delay is short and never ahead of the work), and `reason` says so; a lag longer than the
period is then mistaken for a shorter one, which no sample of a strictly periodic load can tell apart.
On the embedded mock (simulated GPU, no sensor delay) the estimate is about 10 ms; that source declares
its delay (0), which `auto` applies instead (`correct`'s `sensor_delay_s`).

On the committed real runs (docs/results): the three H100 runs give 55, 67 and 87 ms (peak r
0.78-0.87, halves within 25 ms of each other; `fixed-500ms`'s idle gaps give some 400 edges); in the
H200 experiment (one arm per run), the `fixed-500ms` cells give 42-114 ms (198 edges, r 0.70-0.96) and
four of the five `bursty-20rps` cells 78-108 ms (18-24 edges, r 0.82-0.93; the fifth saw 6 edges).
`fixed-50ms`, `uniform-20rps`, `sequential` and `one-burst` keep the GPU busy throughout their window
(or idle for less than a sample interval between requests): no estimate. Where the sampler's grid was
phase-locked to a fixed schedule, both halves land on the same 5 ms step (62.5 ms twice): the samples
saw only a few phases of the schedule, which the sampler's phase jitter (power/sampler.py) removes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, NotRequired, TypedDict

import numpy as np

from foundation.errors import InputError
from harness.energy.flags import POWER_LAG_CAPPED, POWER_LAG_UNKNOWN, POWER_LAG_UNSTABLE, FlagList
from harness.power.series import EnergySeries, PowerData

METHOD = "busy-xcorr"
SEARCH_S = (-0.25, 0.5)  # power cannot lead its requests by much; half a second of lag is no sensor's
STEP_S = 0.005
MIN_TRANSITIONS = 10  # idle/busy edges in the samples (each half needs half as many)
MIN_PEAK_R = 0.5  # the real runs with edges peak at 0.69-0.96, those without at 0.42 at most
SPREAD_LIMIT_S = 0.05  # halves half a 10 Hz sample interval apart or more disagree
# A second peak this close in height, at least ALIAS_S away, makes the lag ambiguous: a periodic
# schedule correlates as well one period later (fixed 300 ms arrivals: 75 ms and -225 ms).
ALIAS_RATIO, ALIAS_S = 0.9, 0.1
NOT_BEFORE_S = -0.05  # of such peaks, the shortest lag from here on (a sensor does not run ahead)
MAX_SAMPLES = 50_000  # a longer series is thinned evenly: the cost is samples x lags
Status = Literal["stable", "unstable", "no_estimate", "declared"]


class GpuLag(TypedDict):
    """One GPU's estimate and what was applied, as summary.json's `power_lag.gpus` lists it."""

    estimate_s: float | None  # None: no estimate (`reason`)
    peak_r: float | None
    second_peak: list[float] | None  # [lag s, r] of the highest other peak ALIAS_S or more away
    halves_s: list[float | None]  # the estimates of the first and second half of the samples
    spread_s: float | None
    transitions: int  # idle/busy edges the samples saw
    status: Status
    reason: str | None
    applied_s: float  # the shift the join applied (power moved earlier by this much)
    capped_from_s: NotRequired[float]  # the shift asked for, where the samples past the run ran out


class PowerLagRecord(TypedDict):
    setting: str  # `--power-lag`: auto, off, or seconds
    method: str
    search_s: list[float]
    gpus: dict[str, GpuLag]


@dataclass(frozen=True)
class Scan:
    lag_s: float | None
    peak_r: float | None
    transitions: int
    reason: str | None
    second: list[float] | None = None


def parse_power_lag(text: str) -> str:
    """`--power-lag`'s value, canonical: `auto`, `off`, or seconds within the search range."""
    value = str(text).strip().lower()
    if value in ("auto", "off"):
        return value
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not SEARCH_S[0] <= seconds <= SEARCH_S[1]:
        raise InputError(
            f"--power-lag {text!r}: expected auto, off or seconds from {SEARCH_S[0]} to {SEARCH_S[1]}"
        )
    return repr(seconds)


def estimate(
    series: EnergySeries, start: np.ndarray, end: np.ndarray, windows: Sequence[tuple[int, int]]
) -> GpuLag:
    """The lag of one GPU's instant power behind the requests in flight (`start`/`end`: lifetimes, ns)."""
    t, p, win = _samples(series, windows)
    starts, ends = np.sort(start), np.sort(end)
    whole = _scan(t, p, win, starts, ends, MIN_TRANSITIONS)
    # Halves of the evidence, not of the time: split at the middle edge, so that a run whose edges
    # cluster in one arm still has two halves to compare.
    edges = _edges(t, win, starts, ends)
    half = int(edges[len(edges) // 2]) + 1 if len(edges) else len(t) // 2
    halves = [
        _scan(t[sl], p[sl], win[sl], starts, ends, MIN_TRANSITIONS // 2)
        for sl in (slice(0, half), slice(half, None))
    ]
    h = [x.lag_s for x in halves]
    spread = abs(h[0] - h[1]) if h[0] is not None and h[1] is not None else None
    out: GpuLag = {
        "estimate_s": whole.lag_s,
        "peak_r": whole.peak_r,
        "second_peak": whole.second,
        "halves_s": h,
        "spread_s": spread,
        "transitions": whole.transitions,
        "status": "no_estimate",
        "reason": whole.reason,
        "applied_s": 0.0,
    }
    if whole.lag_s is None:
        return out
    edge = min(whole.lag_s - SEARCH_S[0], SEARCH_S[1] - whole.lag_s) < STEP_S
    second = whole.second
    if edge:
        out["status"], out["reason"] = "unstable", "the peak lies at the edge of the search range"
    elif whole.lag_s < NOT_BEFORE_S:
        # A sensor does not report power before it is drawn: the power source's clock and the runner's
        # disagree (a remote sidecar's offset), or the correlation found something else.
        out["status"], out["reason"] = "unstable", "power leads the requests (the clocks may disagree)"
    elif spread is None:
        out["status"], out["reason"] = "unstable", "a half of the run has no estimate of its own"
    elif round(spread, 9) >= SPREAD_LIMIT_S:  # to 1e-9 s: lags on the grid, whatever the float rounding
        out["status"], out["reason"] = "unstable", f"the halves' estimates are {spread * 1e3:.0f} ms apart"
    else:
        out["status"] = "stable"
        if second is not None and whole.peak_r is not None and second[1] >= ALIAS_RATIO * whole.peak_r:
            out["reason"] = (
                f"periodic: a peak at {second[0] * 1e3:.0f} ms correlates almost as well "
                f"(r {second[1]:.2f}); took the shortest lag from {NOT_BEFORE_S * 1e3:.0f} ms"
            )
    return out


def shift(series: EnergySeries, lag_s: float) -> EnergySeries:
    """The series moved `lag_s` earlier: same readings, same energies, earlier times."""
    if not lag_s:
        return series
    return replace(series, t_ns=series.t_ns - round(lag_s * 1e9))


@dataclass
class Correction:
    power: PowerData  # shifted
    record: PowerLagRecord


def correct(
    power: PowerData,
    start: np.ndarray,
    end: np.ndarray,
    windows: Sequence[tuple[int, int]],
    setting: str,
    flags: FlagList,
    sensor_delay_s: float | None = None,
) -> Correction:
    """Estimate every GPU's lag, shift its series by what `setting` says, and flag what `auto` could not
    pin down (an error: the figures then carry the sensor's delay). A power source that knows its own
    delay (`sensor_delay_s`: the simulated GPU's is 0) needs no estimate: `auto` applies that delay,
    and the estimate is kept for the record only. Estimated against it, the client's own delays (a
    loaded or stalled client) would otherwise read as an unstable lag of a sensor that has none."""
    setting = parse_power_lag(setting)
    gpus: dict[str, GpuLag] = {}
    shifted = []
    for s in power.series:
        lag = estimate(s, start, end, windows)
        if setting == "auto" and sensor_delay_s is not None:
            lag["status"], lag["applied_s"] = "declared", sensor_delay_s
            lag["reason"] = f"the power source declares its delay: {_ms(sensor_delay_s)}"
        elif setting == "auto":
            lag["applied_s"] = lag["estimate_s"] if lag["status"] == "stable" and lag["estimate_s"] else 0.0
        elif setting != "off":
            lag["applied_s"] = float(setting)
        if setting == "auto" and lag["status"] == "no_estimate" and lag["transitions"]:
            flags.add(
                POWER_LAG_UNKNOWN,
                "info",
                f"no estimate of the power series' lag behind the requests ({lag['reason']}): not "
                "corrected, so energy trailing a request by the sensor's delay counts towards the idle "
                "gap or the request after it (--power-lag SECONDS sets it)",
                f"gpu {s.gpu}",
            )
        if setting == "auto" and lag["status"] == "unstable":
            flags.add(
                POWER_LAG_UNSTABLE,
                "error",
                f"the power series' lag behind the requests is unstable ({lag['reason']}; estimate "
                f"{_ms(lag['estimate_s'])}, halves {_ms(lag['halves_s'][0])} and "
                f"{_ms(lag['halves_s'][1])}): not corrected, so energy trailing each request by the "
                "sensor's delay counts towards what follows it (--power-lag SECONDS sets it)",
                f"gpu {s.gpu}",
            )
        _cap(s, lag, windows, flags)
        gpus[s.gpu] = lag
        shifted.append(shift(s, lag["applied_s"]))
    record: PowerLagRecord = {"setting": setting, "method": METHOD, "search_s": list(SEARCH_S), "gpus": gpus}
    return Correction(replace(power, series=shifted), record)


def _cap(series: EnergySeries, lag: GpuLag, windows: Sequence[tuple[int, int]], flags: FlagList) -> None:
    """Keep the shift within the samples the series has past the windows: shifted further, the end of
    the last window (or, for a negative lag, the start of the first) would have no power under it and
    read as incomplete power. A run that stopped reading power right after its last response (an
    experiment's cell without an idle window after it) is corrected by no more than it has."""
    applied = lag["applied_s"]
    if not applied or not windows or len(series.t_ns) == 0:
        return
    if applied > 0:
        room = (int(series.t_ns[-1]) - max(hi for _, hi in windows)) / 1e9
    else:
        room = (min(lo for lo, _ in windows) - int(series.t_ns[0])) / 1e9
    room = max(room, 0.0)
    if abs(applied) <= room:
        return
    lag["capped_from_s"] = applied
    lag["applied_s"] = math.copysign(room, applied)
    flags.add(
        POWER_LAG_CAPPED,
        "warning",
        f"the power samples reach only {_ms(room)} {'past the last' if applied > 0 else 'before the first'} "
        f"window: the lag of {_ms(applied)} was applied as {_ms(lag['applied_s'])}, so part of the "
        "sensor's delay stays in the figures (a run now keeps reading power past its last response)",
        f"gpu {series.gpu}",
    )


def _ms(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds * 1e3:.0f} ms"


def _samples(
    series: EnergySeries, windows: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instant power inside the windows: (t_ns, W, window index), thinned to `MAX_SAMPLES`."""
    if series.power_w is None or not windows:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    t, p = series.t_ns, series.power_w
    win = np.full(len(t), -1, np.int64)
    for i, (lo, hi) in enumerate(windows):
        win[(t >= lo) & (t <= hi) & (win < 0)] = i
    keep = np.flatnonzero((win >= 0) & np.isfinite(p))
    keep = keep[:: max(1, math.ceil(len(keep) / MAX_SAMPLES))]
    return t[keep], p[keep], win[keep]


def _scan(
    t: np.ndarray, p: np.ndarray, win: np.ndarray, starts: np.ndarray, ends: np.ndarray, min_edges: int
) -> Scan:
    """The correlation peak over the lag grid, or why there is none."""
    if len(t) < 3:
        return Scan(None, None, 0, "no instant power samples inside the arm windows")
    edges = len(_edges(t, win, starts, ends))
    if edges < min_edges:
        return Scan(None, None, edges, f"{edges} idle/busy edge(s) in the samples, fewer than {min_edges}")
    n = np.bincount(win).astype(np.float64)
    pc = p - (np.bincount(win, p) / np.maximum(n, 1))[win]
    lags = np.arange(round(SEARCH_S[0] / STEP_S), round(SEARCH_S[1] / STEP_S) + 1) * STEP_S
    r = np.full(len(lags), np.nan)
    pp = float(pc @ pc)
    for k, lag in enumerate(lags):
        b = _busy(t - round(lag * 1e9), starts, ends)
        bc = b - (np.bincount(win, b) / np.maximum(n, 1))[win]
        bb = float(bc @ bc)
        if bb > 0 and pp > 0:
            r[k] = float(pc @ bc) / math.sqrt(pp * bb)
    if not np.isfinite(r).any():
        return Scan(None, None, edges, "power or activity does not vary")
    # Peaks are chosen on r to 1e-9: the last bits that another version of a numerical library rounds
    # differently (the order of its sums) must not pick another peak, in a committed run or any other.
    rr = np.nan_to_num(np.round(r, 9), nan=-np.inf)
    i = int(np.argmax(rr))
    if r[i] < MIN_PEAK_R:
        return Scan(None, float(r[i]), edges, f"peak correlation {r[i]:.2f} is under {MIN_PEAK_R}")
    peaks = np.flatnonzero((rr[1:-1] > rr[:-2]) & (rr[1:-1] >= rr[2:])) + 1  # local maxima
    # Peaks nearly as high as the highest are one period apart: take the shortest lag a sensor can have.
    far = np.abs(lags[peaks] - lags[i]) >= ALIAS_S  # another peak, not a wiggle on this one's flank
    near = [k for k in peaks[far] if rr[k] >= ALIAS_RATIO * rr[i] and lags[k] >= NOT_BEFORE_S]
    i = min([k for k in [i, *near] if lags[k] >= NOT_BEFORE_S], default=i)  # lags ascend with k
    lag = float(lags[i])
    others = peaks[np.abs(lags[peaks] - lag) >= ALIAS_S]
    second = None
    if len(others):
        j = int(others[np.argmax(rr[others])])
        second = [float(lags[j]), float(r[j])]
    if 0 < i < len(r) - 1 and np.isfinite(r[i - 1]) and np.isfinite(r[i + 1]):
        curve = r[i - 1] - 2 * r[i] + r[i + 1]
        if curve < 0:  # the vertex of the parabola through the peak and its neighbours
            lag += STEP_S * float(np.clip(0.5 * (r[i - 1] - r[i + 1]) / curve, -0.5, 0.5))
    return Scan(lag, float(r[i]), edges, None, second)


def _edges(t: np.ndarray, win: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Indices i where the samples i and i + 1 of one window see idle on one side and busy on the other."""
    busy = _busy(t, starts, ends)
    return np.flatnonzero((busy[1:] != busy[:-1]) & (win[1:] == win[:-1]))


def _busy(t: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """1.0 where some request is in flight at t (sent <= t < done), else 0.0."""
    count = np.searchsorted(starts, t, side="right") - np.searchsorted(ends, t, side="right")
    busy: np.ndarray = (count > 0).astype(np.float64)
    return busy
