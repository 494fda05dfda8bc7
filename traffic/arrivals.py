"""Arrival processes: pure, seeded functions that return absolute offsets in seconds.

Every process starts with a request at offset 0 and builds the later offsets as the cumulative sum of
its gaps, so offsets are non-decreasing and the gaps between consecutive requests are exactly the
drawn gaps (never a chain of relative sleeps). Give `n` (number of requests), `duration` (keep
offsets < duration), or both (whichever cuts first).

`rng` is a `numpy.random.Generator` or an integer seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Rng = np.random.Generator | int


def fixed_offsets(n: int | None, interval: float, *, duration: float | None = None) -> np.ndarray:
    """One request every `interval` seconds (computed as i * interval, so no rounding drift)."""
    _check_positive(interval=interval)
    count = _count_for(n, duration, interval)
    offsets = np.arange(count, dtype=float) * interval
    return _cut(offsets, n, duration)


def uniform_offsets(
    n: int | None, low: float, high: float, rng: Rng, *, duration: float | None = None
) -> np.ndarray:
    """i.i.d. gaps ~ U[low, high], accumulated: offset_i = gap_1 + ... + gap_i."""
    if not 0 <= low < high:
        raise ValueError(f"uniform: need 0 <= low < high (got {low}, {high})")
    gen = _rng(rng)
    return _accumulate(lambda k: gen.uniform(low, high, k), (low + high) / 2, n, duration)


def paper_uniform_offsets(n: int, low: float, high: float, rng: Rng) -> np.ndarray:
    """The construction of the paper's published scripts, for comparison only.

    Request i's *total* delay is a fresh sum of i uniforms, drawn independently for every request
    (`sum(random.uniform(lo, hi) for _ in range(i))`). The mean is the same as ours, but the
    variance grows with i, so late requests overtake each other (the result is NOT sorted in request
    order) and, once sent in time order, their gaps no longer follow U[low, high]: they bunch up
    (gaps shorter than `low`, CV tending to that of Poisson arrivals).
    """
    gen = _rng(rng)
    return np.array([gen.uniform(low, high, i).sum() for i in range(n)], dtype=float)


def bursty_offsets(
    n: int | None,
    intra: float,
    gap: float,
    rng: Rng,
    *,
    size: int | None = None,
    size_min: int | None = None,
    size_max: int | None = None,
    duration: float | None = None,
) -> np.ndarray:
    """ON/OFF bursts: `size` requests `intra` s apart, then `gap` s of silence (end-to-start).

    The first request of burst k+1 is `gap` seconds after the last request of burst k, so a cycle of
    a burst of s requests lasts (s-1)*intra + gap. With `size_min`/`size_max` each burst's size is a
    uniform integer in [size_min, size_max] (drawn from `rng`).
    """
    if intra < 0 or gap <= 0:
        raise ValueError(f"bursty: need intra >= 0 and gap > 0 (got {intra}, {gap})")
    gen = _rng(rng)
    if size is not None:
        if size < 1:
            raise ValueError(f"bursty: size must be >= 1 (got {size})")
        mean_size = float(size)
        min_size = max_size = size
    else:
        if size_min is None or size_max is None or not 1 <= size_min <= size_max:
            raise ValueError("bursty: give size, or 1 <= size_min <= size_max")
        mean_size = (size_min + size_max) / 2
        min_size, max_size = size_min, size_max

    # Whole bursts are generated and the unused tail kept, so successive draws continue one stream.
    pending = np.empty(0)

    def gaps(k: int) -> np.ndarray:
        nonlocal pending
        if len(pending) < k:
            # Each burst contributes `size` gaps: size-1 intra gaps, then one inter-burst gap.
            bursts = k // min_size + 1
            sizes = (
                np.full(bursts, size) if size is not None else gen.integers(min_size, max_size + 1, bursts)
            )
            fresh = np.full(int(sizes.sum()), intra, dtype=float)
            fresh[np.cumsum(sizes) - 1] = gap
            pending = np.concatenate((pending, fresh))
        out, pending = pending[:k], pending[k:]
        return out

    mean_gap = ((mean_size - 1) * intra + gap) / mean_size
    return _accumulate(gaps, mean_gap, n, duration)


def poisson_offsets(n: int | None, rate: float, rng: Rng, *, duration: float | None = None) -> np.ndarray:
    """Poisson process: exponential gaps with mean 1/rate."""
    _check_positive(rate=rate)
    gen = _rng(rng)
    return _accumulate(lambda k: gen.exponential(1.0 / rate, k), 1.0 / rate, n, duration)


def gamma_offsets(
    n: int | None, rate: float, cv: float, rng: Rng, *, duration: float | None = None
) -> np.ndarray:
    """Gamma-distributed gaps with mean 1/rate and coefficient of variation cv (shape 1/cv^2)."""
    _check_positive(rate=rate, cv=cv)
    gen = _rng(rng)
    shape = 1.0 / cv**2
    scale = 1.0 / (rate * shape)
    return _accumulate(lambda k: gen.gamma(shape, scale, k), 1.0 / rate, n, duration)


def process_offsets(
    kind: str, params: dict[str, Any], rng: Rng, n: int | None, duration: float | None
) -> np.ndarray:
    """Dispatch by schedule kind with resolved parameters (see `traffic.schedules.resolve`)."""
    if kind == "fixed":
        return fixed_offsets(n, params["interval"], duration=duration)
    if kind == "uniform":
        return uniform_offsets(n, params["low"], params["high"], rng, duration=duration)
    if kind == "bursty":
        sizes = {k: params[k] for k in ("size", "size_min", "size_max") if k in params}
        return bursty_offsets(n, params["intra"], params["gap"], rng, duration=duration, **sizes)
    if kind == "poisson":
        return poisson_offsets(n, params["rate"], rng, duration=duration)
    if kind == "gamma":
        return gamma_offsets(n, params["rate"], params["cv"], rng, duration=duration)
    raise ValueError(f"{kind}: not an open-loop process")


def _accumulate(
    draw: Callable[[int], np.ndarray], mean_gap: float, n: int | None, duration: float | None
) -> np.ndarray:
    count = _count_for(n, duration, mean_gap)
    gaps = draw(max(count - 1, 0))
    offsets = np.concatenate(([0.0], np.cumsum(gaps)))[:count]
    # With only a duration, draw more gaps until the horizon is passed (the estimate may fall short).
    while n is None and duration is not None and offsets[-1] < duration:
        more = draw(max(len(offsets) // 2, 16))
        offsets = np.concatenate((offsets, offsets[-1] + np.cumsum(more)))
    return _cut(offsets, n, duration)


def _count_for(n: int | None, duration: float | None, mean_gap: float) -> int:
    if n is None and duration is None:
        raise ValueError("give n (requests) or duration (seconds)")
    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    if duration is not None and not duration > 0:
        raise ValueError(f"duration must be > 0 (got {duration})")
    if n is not None:
        return n
    assert duration is not None
    # Expected count plus slack; _accumulate draws more if a slow draw still falls short.
    expected = duration / mean_gap
    return math.ceil(expected + 4 * math.sqrt(expected + 1)) + 1


def _cut(offsets: np.ndarray, n: int | None, duration: float | None) -> np.ndarray:
    if n is not None:
        offsets = offsets[:n]
    if duration is not None:
        offsets = offsets[offsets < duration]
    return offsets


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0 (got {value})")


def _rng(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
