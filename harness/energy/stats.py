"""Percentiles and seeded bootstrap confidence intervals.

The bootstrap resamples requests with replacement. Up to `MAX_GROUPS` values it is the textbook
bootstrap (each resample is a multinomial draw of counts over the values). Above that, values are
sorted into `MAX_GROUPS` equal-count groups, each represented by its mean, and the counts are drawn
over the groups: the resampled mean stays unbiased and percentiles keep a resolution of 1/MAX_GROUPS
quantiles, while the cost no longer grows with the number of requests. The spread *within* a group
is not resampled, which narrows the mean's interval by a negligible share (the within-group variance
of 4,096 quantile groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

MAX_GROUPS = 4096
RESAMPLES = 1000
# Bounds of the bootstrap options (the flags check them): enough resamples for any CI, a seed numpy
# takes as one signed 64-bit word.
MIN_RESAMPLES, MAX_RESAMPLES = 100, 1_000_000
MAX_SEED = 2**63 - 1
QUANTILES = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
_BLOCK = 128  # resamples drawn at once (bounds memory at BLOCK x MAX_GROUPS counts)


@dataclass(frozen=True)
class BootstrapSpec:
    resamples: int = RESAMPLES
    seed: int = 0


class Percentiles(TypedDict):
    """The finite values' count, mean and `QUANTILES`; None where there are no values."""

    n: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None


class Described(Percentiles):
    """`Percentiles` with bootstrap 95% intervals: `ci95` of the mean, `ci95_p50`, ... of each quantile."""

    ci95: list[float] | None
    ci95_p50: list[float] | None
    ci95_p90: list[float] | None
    ci95_p99: list[float] | None


class Difference(TypedDict):
    diff: float | None
    ci95: list[float] | None
    relative: float | None


def percentiles(values: np.ndarray, owned: bool = False) -> Percentiles:
    """mean, p50, p90, p99 (and n); None where there are no values.

    `owned`: the caller hands over `values` (they may be reordered in place, saving a copy).
    """
    v = np.asarray(values)
    finite = np.isfinite(v)
    if not finite.all():
        v, owned = v[finite], True
    if len(v) == 0:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    mean = float(v.mean(dtype=np.float64))  # before the quantiles, which may reorder `v`
    p50, p90, p99 = (float(q) for q in np.quantile(v, list(QUANTILES.values()), overwrite_input=owned))
    return {"n": len(v), "mean": mean, "p50": p50, "p90": p90, "p99": p99}


def _groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(representative values, probabilities) over which resamples draw counts."""
    v = np.sort(values)
    n = len(v)
    if n <= MAX_GROUPS:
        return v, np.full(n, 1.0 / n)
    edges = np.linspace(0, n, MAX_GROUPS + 1).astype(np.int64)
    sums = np.add.reduceat(v, edges[:-1])
    sizes = np.diff(edges)
    return sums / sizes, sizes / n


def resample(values: np.ndarray, spec: BootstrapSpec, stream: int = 0) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the mean and the percentiles (arrays of length `spec.resamples`).

    `stream` selects an independent random stream for the same seed (e.g. one per arm), so results
    do not depend on the order in which arms are processed.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    out = {k: np.full(spec.resamples, np.nan) for k in ("mean", *QUANTILES)}
    if n == 0:
        return out
    reps, probs = _groups(v)
    rng = np.random.default_rng([spec.seed, stream])
    for lo in range(0, spec.resamples, _BLOCK):
        hi = min(lo + _BLOCK, spec.resamples)
        counts = rng.multinomial(n, probs, size=hi - lo)
        out["mean"][lo:hi] = counts @ reps / n
        # Lower empirical quantile of each resample: the first value whose cumulative count reaches
        # q·n. Offsetting row r by r·(n+1) makes all rows one sorted array, searched once.
        cum = np.cumsum(counts, axis=1) + (np.arange(hi - lo) * (n + 1))[:, None]
        flat = cum.ravel()
        base = np.arange(hi - lo) * (n + 1)
        for key, q in QUANTILES.items():
            idx = np.searchsorted(flat, base + max(np.ceil(q * n), 1)) - np.arange(hi - lo) * len(reps)
            out[key][lo:hi] = reps[idx]
    return out


def interval(replicates: np.ndarray, level: float = 0.95) -> list[float] | None:
    r = replicates[np.isfinite(replicates)]
    if len(r) == 0:
        return None
    lo, hi = np.quantile(r, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def describe(values: np.ndarray, spec: BootstrapSpec, stream: int = 0) -> Described:
    """Percentiles of `values` with bootstrap 95% intervals: `ci95` (of the mean), `ci95_p50`, ..."""
    stats = percentiles(values)
    if not stats["n"]:
        return {**stats, "ci95": None, "ci95_p50": None, "ci95_p90": None, "ci95_p99": None}
    reps = resample(values, spec, stream)
    return {
        **stats,
        "ci95": interval(reps["mean"]),
        "ci95_p50": interval(reps["p50"]),
        "ci95_p90": interval(reps["p90"]),
        "ci95_p99": interval(reps["p99"]),
    }


def scaled(stats: Described, factor: float) -> Described:
    """The same statistics in another unit (e.g. J → Wh)."""

    def value(v: float | None) -> float | None:
        return None if v is None else v * factor

    def ci(v: list[float] | None) -> list[float] | None:
        return None if v is None else [x * factor for x in v]

    return {
        "n": stats["n"],
        "mean": value(stats["mean"]),
        "p50": value(stats["p50"]),
        "p90": value(stats["p90"]),
        "p99": value(stats["p99"]),
        "ci95": ci(stats["ci95"]),
        "ci95_p50": ci(stats["ci95_p50"]),
        "ci95_p90": ci(stats["ci95_p90"]),
        "ci95_p99": ci(stats["ci95_p99"]),
    }


def mean_difference(
    a: np.ndarray, b: np.ndarray, spec: BootstrapSpec, streams: tuple[int, int] = (1, 2)
) -> Difference:
    """Mean of `a` minus mean of `b`, with a bootstrap 95% interval from independent resamples."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return {"diff": None, "ci95": None, "relative": None}
    ra = resample(a, spec, streams[0])["mean"]
    rb = resample(b, spec, streams[1])["mean"]
    diff = float(a.mean() - b.mean())
    base = float(b.mean())
    return {"diff": diff, "ci95": interval(ra - rb), "relative": diff / base if base else None}
