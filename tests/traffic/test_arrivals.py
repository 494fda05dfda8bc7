"""Arrival processes: determinism, ordering, and their statistics (fixed seeds, large samples)."""

import numpy as np
import pytest
from scipy import stats

from traffic.arrivals import (
    bursty_offsets,
    fixed_offsets,
    gamma_offsets,
    paper_uniform_offsets,
    poisson_offsets,
    uniform_offsets,
)

N = 20_000

PROCESSES = {
    "fixed": lambda n, seed, **kw: fixed_offsets(n, 0.25, **kw),
    "uniform": lambda n, seed, **kw: uniform_offsets(n, 0.1, 0.5, seed, **kw),
    "bursty": lambda n, seed, **kw: bursty_offsets(n, 0.01, 2.4, seed, size=8, **kw),
    "bursty-random": lambda n, seed, **kw: bursty_offsets(n, 0.02, 1.0, seed, size_min=5, size_max=8, **kw),
    "poisson": lambda n, seed, **kw: poisson_offsets(n, 5.0, seed, **kw),
    "gamma": lambda n, seed, **kw: gamma_offsets(n, 5.0, 2.0, seed, **kw),
}
# Fixed spacing and fixed-size bursts are deterministic; the others draw from the seed.
RANDOM = [name for name in PROCESSES if name not in ("fixed", "bursty")]


def gap_stats(offsets: np.ndarray) -> tuple[float, float]:
    gaps = np.diff(offsets)
    return float(gaps.mean()), float(gaps.std() / gaps.mean())


@pytest.mark.parametrize("name", PROCESSES)
def test_offsets_start_at_zero_and_never_decrease(name):
    offsets = PROCESSES[name](5_000, 3)
    assert len(offsets) == 5_000
    assert offsets[0] == 0.0
    assert np.all(np.diff(offsets) >= 0)


@pytest.mark.parametrize("name", PROCESSES)
def test_same_seed_same_offsets(name):
    np.testing.assert_array_equal(PROCESSES[name](1_000, 11), PROCESSES[name](1_000, 11))


@pytest.mark.parametrize("name", RANDOM)
def test_different_seed_different_offsets(name):
    assert not np.array_equal(PROCESSES[name](1_000, 11), PROCESSES[name](1_000, 12))


@pytest.mark.parametrize("name", PROCESSES)
def test_duration_keeps_offsets_below_it_and_fills_it(name):
    offsets = PROCESSES[name](None, 5, duration=120.0)
    assert offsets.max() < 120.0
    mean_gap = gap_stats(PROCESSES[name](N, 5))[0]
    # The horizon is filled: the next arrival would fall past it (allow a few long gaps of slack).
    assert 120.0 - offsets.max() < 30 * mean_gap + 2.4
    both = PROCESSES[name](10, 5, duration=120.0)
    assert len(both) == 10


def test_fixed_gaps_are_exact():
    offsets = fixed_offsets(N, 0.05)
    np.testing.assert_allclose(np.diff(offsets), 0.05, rtol=1e-9)
    assert offsets[-1] == pytest.approx((N - 1) * 0.05)  # no accumulated drift


def test_uniform_gaps_follow_the_requested_distribution():
    mean, cv = gap_stats(uniform_offsets(N, 0.1, 0.5, 7))
    assert mean == pytest.approx(0.3, rel=0.01)
    assert cv == pytest.approx((0.4 / np.sqrt(12)) / 0.3, rel=0.03)
    gaps = np.diff(uniform_offsets(N, 0.1, 0.5, 7))
    assert gaps.min() >= 0.1 and gaps.max() <= 0.5
    assert stats.kstest(gaps, stats.uniform(0.1, 0.4).cdf).pvalue > 0.01


def test_poisson_gaps_are_exponential():
    offsets = poisson_offsets(N, 5.0, 7)
    mean, cv = gap_stats(offsets)
    assert mean == pytest.approx(0.2, rel=0.02)
    assert cv == pytest.approx(1.0, rel=0.03)
    assert stats.kstest(np.diff(offsets), stats.expon(scale=0.2).cdf).pvalue > 0.01
    # Counts in 1 s windows are Poisson: variance equals mean.
    counts = np.bincount(offsets.astype(int))
    assert counts.var() / counts.mean() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize("cv", [0.5, 2.0])
def test_gamma_gaps_have_the_requested_mean_and_cv(cv):
    offsets = gamma_offsets(N, 4.0, cv, 7)
    mean, realized_cv = gap_stats(offsets)
    assert mean == pytest.approx(0.25, rel=0.03)
    assert realized_cv == pytest.approx(cv, rel=0.05)
    shape = 1 / cv**2
    reference = stats.gamma(shape, scale=0.25 / shape)
    assert stats.kstest(np.diff(offsets), reference.cdf).pvalue > 0.01


def test_bursty_fixed_size_structure():
    size, intra, gap = 8, 0.01, 2.4
    offsets = bursty_offsets(100 * size + 1, intra, gap, 0, size=size)  # exactly 100 whole cycles of gaps
    gaps = np.diff(offsets)
    # Gap k (0-based) ends burst j when k+1 is a multiple of size; `gap` is end-to-start.
    is_break = (np.arange(len(gaps)) + 1) % size == 0
    np.testing.assert_allclose(gaps[is_break], gap)
    np.testing.assert_allclose(gaps[~is_break], intra)
    # Burst starts are (size-1)*intra + gap apart.
    np.testing.assert_allclose(np.diff(offsets[::size]), (size - 1) * intra + gap)
    assert 1 / gaps.mean() == pytest.approx(size / ((size - 1) * intra + gap), rel=1e-9)


def test_bursty_random_sizes_are_uniform_in_range():
    offsets = bursty_offsets(N, 0.02, 1.0, 9, size_min=5, size_max=8)
    breaks = np.flatnonzero(np.isclose(np.diff(offsets), 1.0))
    sizes = np.diff(np.concatenate(([-1], breaks)))  # requests per complete burst
    assert set(sizes.tolist()) == {5, 6, 7, 8}
    assert sizes.mean() == pytest.approx(6.5, rel=0.03)
    counts = np.bincount(sizes)[5:]
    assert stats.chisquare(counts).pvalue > 0.01


def test_bursty_duration_draws_keep_bursts_whole():
    # Duration-only plans draw gaps in several chunks; bursts must not be split or merged at chunk edges.
    offsets = bursty_offsets(None, 0.01, 1.0, 4, size=7, duration=500.0)
    breaks = np.flatnonzero(np.isclose(np.diff(offsets), 1.0))
    assert set(np.diff(breaks).tolist()) == {7}


@pytest.mark.parametrize(
    "call",
    [
        lambda: fixed_offsets(10, 0.0),
        lambda: fixed_offsets(10, -1.0),
        lambda: uniform_offsets(10, 0.5, 0.1, 0),
        lambda: uniform_offsets(10, -0.1, 0.1, 0),
        lambda: bursty_offsets(10, 0.01, 0.0, 0, size=3),
        lambda: bursty_offsets(10, -0.01, 1.0, 0, size=3),
        lambda: bursty_offsets(10, 0.01, 1.0, 0, size=0),
        lambda: poisson_offsets(10, 0.0, 0),
        lambda: gamma_offsets(10, 1.0, 0.0, 0),
        lambda: poisson_offsets(None, 1.0, 0),
    ],
)
def test_invalid_parameters_are_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_accumulated_uniform_differs_from_the_papers_total_delay_construction():
    """Ours accumulates i.i.d. gaps; the paper's scripts drew each request's total delay afresh.

    The paper's construction has the same mean offsets, but its variance grows with the request
    index: requests overtake each other, and once sent in time order the gaps bunch up.
    """
    n, low, high = 2_000, 0.1, 0.5
    ours = uniform_offsets(n, low, high, 21)
    theirs = paper_uniform_offsets(n, low, high, 21)

    # Same mean offset for request i (i * 0.3): the difference is not the load.
    late = slice(n // 2, None)
    assert theirs[late].mean() == pytest.approx(ours[late].mean(), rel=0.02)

    # Order: ours keeps request order; theirs reorders (a large share of requests is overtaken).
    assert np.all(np.diff(ours) >= 0)
    overtaken = np.mean(np.diff(theirs) < 0)
    assert overtaken > 0.2

    # Gap distribution: ours is U[low, high]; theirs, sent in time order, is not.
    our_gaps = np.diff(ours)
    their_gaps = np.diff(np.sort(theirs))
    uniform = stats.uniform(low, high - low).cdf
    assert stats.kstest(our_gaps, uniform).pvalue > 0.01
    assert stats.kstest(their_gaps, uniform).pvalue < 1e-6
    # Bunching: no gap of ours is shorter than `low`; most of theirs are among late requests,
    # whose gaps tend to the CV of Poisson arrivals (1) instead of uniform's 0.38.
    assert our_gaps.min() >= low
    late_gaps = np.diff(np.sort(theirs)[late])
    assert np.mean(late_gaps < low) > 0.2
    assert late_gaps.std() / late_gaps.mean() > 0.7
    assert our_gaps.std() / our_gaps.mean() == pytest.approx(0.385, abs=0.03)
