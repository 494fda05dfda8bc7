"""Figures over the repeats of an experiment: per-arm intervals, paired arm differences, position effects.

An experiment runs every arm at every rate R times, each repeat in a fresh random arm order; one
(repeat, rate, arm) is one cell, one measured run. The unit of replication is the repeat, not the
request: requests within a run share a batch, a queue, a thermal state and a host, so they are
autocorrelated, and a bootstrap over them describes the spread within one run, not how certain a figure
is. What a second run would say is answered only by running it again, so every interval here is a
Student-t interval over repeats (one value per cell), however many requests each cell held.

Arms are compared in pairs, matched by (repeat, rate). Within a repeat every arm gets the same prompts
and the same offered arrivals (common random numbers) and runs on the host in the same state, within
minutes of each other; the repeat's host drift (clocks, temperature, background load) therefore moves
all of its arms together, and the per-repeat difference cancels it. A repeat where either arm is
missing has no pair and is dropped from that comparison.

With k arms there are k(k-1)/2 pairs, and at 95% each one would claim a spurious winner 5% of the time:
the chance of some false claim grows with the pairs. The default is therefore Bonferroni: each pair's
interval is at level 1 - (1 - level) / m for the m pairs at its rate, so all of them hold together with
probability at least `level`, and a winner is named only when its simultaneous interval excludes zero.

A cell's energy per request is also uncertain by the counter's resolution (`resolution_j_per_request`:
two counter updates' worth of energy over the cell's requests). The arm interval is widened on both
sides by the mean of the cells' bounds, a conservative guard: the bound is a worst case that a few
repeats do not reliably average down. Paired differences are not widened: two cells' window edges fall
independently between counter updates, so their errors vary from repeat to repeat and already show in
the differences' scatter.

A done cell whose run flagged its arm with an error that makes its figures something else than the
experiment asked for (`EXCLUDING_FLAGS`: power over part of the window, sends later than the lateness
bound, requests that failed in the client) counts as having no value: it takes part in no figure,
difference or position effect, and the report counts it apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

Multiplicity = Literal["bonferroni", "none"]
MULTIPLICITIES: tuple[Multiplicity, ...] = ("bonferroni", "none")

_KEYS = ("repeat", "rate", "arm", "status")
_NOT_DISTINGUISHABLE = "not distinguishable"
# Each with what it means for a cell's figures (the experiment report says it where cells are left out).
EXCLUDING_FLAGS = {
    "power_incomplete": "power over only part of its window",
    "lateness_over_bound": "sends later than the lateness bound",
    "client_errors": "requests that failed in the client",
    "in_flight_capped": "sends held at --max-in-flight",
    "loop_lag_over_bound": "a runner event loop that lagged beyond its bound",
}


@dataclass(frozen=True)
class ArmFigure:
    arm: str
    rate: float | None  # None for the cells run at the arms' own rates (NaN rate)
    metric: str
    repeats: int  # done cells with a finite value
    mean: float
    sd: float | None  # sample sd over repeats (ddof=1); None under 2 repeats
    cv: float | None  # sd / mean; None when undefined
    ci: tuple[float, float] | None  # t-interval over repeats widened by `resolution`; None under 2 repeats
    resolution: float  # mean counter-resolution bound of those cells (0.0 without a resolution column)


@dataclass(frozen=True)
class PairDifference:
    rate: float | None
    metric: str
    a: str
    b: str
    repeats: int  # repeats where both arms are done with finite values
    mean: float | None  # mean of (a - b) over those repeats; None without any
    ci: tuple[float, float] | None  # paired t-interval at `level`; None under 2 paired repeats
    level: float  # per-pair level, after the multiplicity adjustment
    relative: float | None  # mean / (mean of b over the same repeats)
    winner: str | None  # the lower arm, when the interval excludes zero
    verdict: str


@dataclass(frozen=True)
class PositionEffect:
    position: int
    cells: int
    mean: float  # mean residual: cell value minus its (arm, rate) mean
    ci: tuple[float, float] | None


@dataclass(frozen=True)
class _Block:
    """The done cells at one rate: arm -> {repeat: row}, arms in order of first appearance."""

    rate: float | None
    rows: dict[str, dict[int, int]]


@lru_cache(maxsize=256)
def _t_quantile(level: float, df: int) -> float:
    # Cached: sequential stopping and simulations ask for the same few (level, df) again and again.
    # Imported here: scipy.stats costs every `joulebench run` half a second of start-up otherwise.
    from scipy import stats

    return float(stats.t.ppf(1 - (1 - level) / 2, df))


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (exclusive), got {level}")


def t_interval(
    values: Sequence[float] | np.ndarray, level: float = 0.95
) -> tuple[float, float | None, tuple[float, float] | None]:
    """mean, sd, CI over finite values (Student t with n-1 df, scipy.stats.t).

    The mean is NaN without finite values; sd and CI are None under two.
    """
    _check_level(level)
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, None, None
    mean = float(v.mean())
    if n < 2:
        return mean, None, None
    sd = float(v.std(ddof=1))
    half = _t_quantile(level, n - 1) * sd / math.sqrt(n)
    return mean, sd, (mean - half, mean + half)


def _require(cells: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in cells.columns]
    if missing:
        raise ValueError(f"cells have no column {', '.join(map(repr, missing))}")


def excluded(cells: pd.DataFrame) -> np.ndarray:
    """Per cell: its `flags` (comma-separated codes) hold one of `EXCLUDING_FLAGS`."""
    if "flags" not in cells.columns:
        return np.zeros(len(cells), dtype=bool)
    return np.array(
        [
            isinstance(f, str) and not {c.strip() for c in f.split(",")}.isdisjoint(EXCLUDING_FLAGS)
            for f in cells["flags"]
        ],
        dtype=bool,
    )


def _values(cells: pd.DataFrame, metric: str) -> np.ndarray:
    """The metric per cell, NaN where the cell is excluded."""
    values: np.ndarray = cells[metric].to_numpy(dtype=np.float64, copy=True)
    values[excluded(cells)] = np.nan
    return values


def _blocks(cells: pd.DataFrame) -> list[_Block]:
    """Done cells grouped by rate (NaN group first, then ascending); one cell per (repeat, rate, arm)."""
    arms = cells["arm"].astype(str).to_numpy()
    order = {arm: i for i, arm in enumerate(dict.fromkeys(arms.tolist()))}
    rates = cells["rate"].to_numpy(dtype=np.float64)
    repeats = cells["repeat"].to_numpy()
    by_rate: dict[float | None, dict[str, dict[int, int]]] = {}
    for row in np.flatnonzero((cells["status"] == "done").to_numpy()):
        rate = None if math.isnan(rates[row]) else float(rates[row])
        arm, repeat = str(arms[row]), int(repeats[row])
        slot = by_rate.setdefault(rate, {}).setdefault(arm, {})
        if repeat in slot:
            # Two done runs of one cell would count one repeat twice and fake certainty.
            raise ValueError(f"two done cells for repeat {repeat}, rate {rate}, arm {arm!r}")
        slot[repeat] = int(row)
    keys = sorted(by_rate, key=lambda r: (r is not None, r or 0.0))
    return [_Block(r, dict(sorted(by_rate[r].items(), key=lambda kv: order[kv[0]]))) for r in keys]


def _finite_rows(rows: dict[int, int], values: np.ndarray) -> list[int]:
    return [row for row in rows.values() if math.isfinite(values[row])]


def arm_figures(
    cells: pd.DataFrame, metric: str, level: float = 0.95, resolution: str | None = None
) -> list[ArmFigure]:
    """Mean, sd, cv and t-interval of `metric` per (rate, arm) over done repeats with a finite value.

    `resolution` names the column of each cell's resolution bound; the interval is widened by its mean.
    Arms with no finite value at a rate are left out.
    """
    _check_level(level)
    _require(cells, [metric, *_KEYS, *([resolution] if resolution else [])])
    values = _values(cells, metric)
    bounds = cells[resolution].to_numpy(dtype=np.float64) if resolution else None
    figures = []
    for block in _blocks(cells):
        for arm, rows in block.rows.items():
            used = _finite_rows(rows, values)
            if not used:
                continue
            mean, sd, ci = t_interval(values[used], level)
            res = 0.0
            if bounds is not None:
                known = bounds[used][np.isfinite(bounds[used])]
                res = float(known.mean()) if len(known) else 0.0
            if ci is not None:
                ci = (ci[0] - res, ci[1] + res)
            cv = sd / mean if sd is not None and mean != 0 else None
            figures.append(ArmFigure(arm, block.rate, metric, len(used), mean, sd, cv, ci, res))
    return figures


def _verdict(a: str, b: str, mean: float, ci: tuple[float, float], level: float) -> tuple[str | None, str]:
    lo, hi = ci
    if lo <= 0 <= hi:
        return None, _NOT_DISTINGUISHABLE
    # Say it as the winner's advantage, a positive amount: a - b < 0 means a is lower.
    winner, by, (lo, hi) = (a, -mean, (-hi, -lo)) if hi < 0 else (b, mean, (lo, hi))
    return winner, f"{winner} lower by {by:.3g} ({level:.1%} CI {lo:.3g}..{hi:.3g})"


def pair_differences(
    cells: pd.DataFrame, metric: str, level: float = 0.95, multiplicity: Multiplicity = "bonferroni"
) -> list[PairDifference]:
    """Paired differences a - b of `metric` for every pair of arms at every rate, matched by repeat.

    Every arm with a done cell at a rate takes part in that rate's pairs (and in the count m of pairs),
    even where it has no finite value yet: such a pair has no interval, and no winner.
    """
    _check_level(level)
    if multiplicity not in MULTIPLICITIES:
        raise ValueError(f"multiplicity must be one of {', '.join(MULTIPLICITIES)}, got {multiplicity!r}")
    _require(cells, [metric, *_KEYS])
    values = _values(cells, metric)
    pairs = []
    for block in _blocks(cells):
        arms = list(block.rows)
        m = len(arms) * (len(arms) - 1) // 2
        per_pair = 1 - (1 - level) / m if multiplicity == "bonferroni" and m else level
        for i, a in enumerate(arms):
            for b in arms[i + 1 :]:
                ra, rb = block.rows[a], block.rows[b]
                shared = [r for r in ra if r in rb and math.isfinite(values[ra[r]] + values[rb[r]])]
                va = values[[ra[r] for r in shared]]
                vb = values[[rb[r] for r in shared]]
                pairs.append(_pair(block.rate, metric, a, b, va, vb, per_pair))
    return pairs


def _pair(
    rate: float | None, metric: str, a: str, b: str, va: np.ndarray, vb: np.ndarray, level: float
) -> PairDifference:
    n = len(va)
    if n == 0:
        verdict = f"{_NOT_DISTINGUISHABLE} (fewer than 2 paired repeats)"
        return PairDifference(rate, metric, a, b, 0, None, None, level, None, None, verdict)
    mean, _, ci = t_interval(va - vb, level)
    base = float(vb.mean())
    relative = mean / base if base != 0 else None
    if ci is None:
        winner, verdict = None, f"{_NOT_DISTINGUISHABLE} (fewer than 2 paired repeats)"
    else:
        winner, verdict = _verdict(a, b, mean, ci, level)
    return PairDifference(rate, metric, a, b, n, mean, ci, level, relative, winner, verdict)


def position_effects(
    cells: pd.DataFrame, metric: str, level: float = 0.95, relative: bool = False
) -> list[PositionEffect]:
    """Mean residual of `metric` by the arm's position in its block, pooled over arms and rates.

    A residual is a done cell's value minus the mean of its (arm, rate) over all done repeats; an
    (arm, rate) with a single finite value is left out, its residual being zero by construction. With a
    balanced order (every arm in every position equally often) a nonzero effect means carry-over or
    warm-up; the residuals of one (arm, rate) sum to zero, so the interval is a diagnostic, not a test.
    With `relative`, a residual is a share of its (arm, rate) mean: arms that cost 2 J and 90 J a request
    then pool on one scale instead of the expensive arm's noise drowning the cheap one's.
    """
    _check_level(level)
    _require(cells, [metric, "position", *_KEYS])
    values = _values(cells, metric)
    positions = cells["position"].to_numpy()
    residuals: dict[int, list[float]] = {}
    for block in _blocks(cells):
        for rows in block.rows.values():
            used = _finite_rows(rows, values)
            if len(used) < 2:
                continue
            mean = float(values[used].mean())
            for row in used:
                residual = float(values[row]) - mean
                if relative:
                    residual = residual / mean if mean else math.nan
                residuals.setdefault(int(positions[row]), []).append(residual)
    effects = []
    for position in sorted(residuals):
        mean, _, ci = t_interval(residuals[position], level)
        effects.append(PositionEffect(position, len(residuals[position]), mean, ci))
    return effects


def widest_half_width(pairs: Sequence[PairDifference]) -> float | None:
    """The largest CI half-width among pairs (None if any pair has no CI yet).

    Sequential stopping compares it with a target: stop once every pair is known that precisely.
    """
    if not pairs or any(p.ci is None for p in pairs):
        return None
    return max((p.ci[1] - p.ci[0]) / 2 for p in pairs if p.ci is not None)
