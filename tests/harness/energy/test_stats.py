"""Percentiles and the seeded bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from harness.energy import BootstrapSpec
from harness.energy.stats import MAX_GROUPS, describe, mean_difference, percentiles, resample


def test_percentiles_ignore_non_finite_and_say_none_when_empty():
    p = percentiles(np.array([1.0, 2.0, 3.0, np.nan, np.inf]))
    assert p == {"n": 3, "mean": 2.0, "p50": 2.0, "p90": pytest.approx(2.8), "p99": pytest.approx(2.98)}
    assert percentiles(np.array([])) == {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None}


def test_bootstrap_is_reproducible_and_seed_dependent():
    v = np.random.default_rng(0).lognormal(size=500)
    a, b = describe(v, BootstrapSpec(seed=1)), describe(v, BootstrapSpec(seed=1))
    assert a == b
    assert describe(v, BootstrapSpec(seed=2))["ci95"] != a["ci95"]
    assert a["ci95"][0] < a["mean"] < a["ci95"][1]
    assert a["ci95_p90"][0] <= a["p90"] <= a["ci95_p90"][1]


@pytest.mark.parametrize("n", [200, 3 * MAX_GROUPS])
def test_bootstrap_interval_of_the_mean_has_the_textbook_width(n):
    """Exact bootstrap (n <= MAX_GROUPS) and grouped bootstrap (above) both match the normal-theory
    interval of the mean, 2 x 1.96 s / sqrt(n), within 10%."""
    v = np.random.default_rng(n).gamma(2.0, 3.0, size=n)
    lo, hi = describe(v, BootstrapSpec(resamples=2000, seed=3))["ci95"]
    expected = 2 * 1.96 * v.std(ddof=1) / np.sqrt(n)
    assert hi - lo == pytest.approx(expected, rel=0.10)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    hits = 0
    for i in range(200):
        v = rng.exponential(5.0, size=80)
        lo, hi = describe(v, BootstrapSpec(resamples=400, seed=i))["ci95"]
        hits += lo <= 5.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_resample_streams_are_independent():
    v = np.arange(100.0)
    a = resample(v, BootstrapSpec(seed=0), stream=1)["mean"]
    b = resample(v, BootstrapSpec(seed=0), stream=2)["mean"]
    assert not np.array_equal(a, b)


def test_mean_difference():
    rng = np.random.default_rng(5)
    a, b = rng.normal(10, 1, 400), rng.normal(12, 1, 400)
    d = mean_difference(a, b, BootstrapSpec(seed=0))
    assert d["diff"] == pytest.approx(a.mean() - b.mean())
    assert d["ci95"][0] < d["diff"] < d["ci95"][1] < 0
    assert d["relative"] == pytest.approx(d["diff"] / b.mean())
    same = mean_difference(a, a + rng.normal(0, 0.01, 400), BootstrapSpec(seed=0))
    assert same["ci95"][0] < 0 < same["ci95"][1]
    assert mean_difference(a, np.array([]), BootstrapSpec())["diff"] is None
