"""harness.report.regression: the intervals of a difference and the verdict rule (docs/ci.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.report.regression import ArmFigures, Estimate, check, judge, mover_difference, welch_difference


def test_mover_with_symmetric_intervals_adds_half_widths_in_quadrature():
    b, c = Estimate(10.0, (9.0, 11.0)), Estimate(12.0, (10.5, 13.5))
    low, high = mover_difference(b, c)
    assert (low, high) == pytest.approx((2.0 - math.hypot(1.0, 1.5), 2.0 + math.hypot(1.0, 1.5)))
    assert mover_difference(b, Estimate(12.0)) is None


def test_mover_uses_the_side_of_each_interval_that_bounds_the_difference():
    # Only the candidate's lower and the baseline's upper half-widths bound the difference from below.
    b, c = Estimate(10.0, (9.9, 13.0)), Estimate(12.0, (11.0, 12.1))
    low, high = mover_difference(b, c)
    assert low == pytest.approx(2.0 - math.hypot(1.0, 3.0))
    assert high == pytest.approx(2.0 + math.hypot(0.1, 0.1))


def test_welch_matches_scipy():
    rng = np.random.default_rng(3)
    b, c = rng.normal(10, 1, 5), rng.normal(11, 2, 7)
    expected = stats.ttest_ind(c, b, equal_var=False).confidence_interval(0.95)
    assert welch_difference(b.tolist(), c.tolist()) == pytest.approx((expected.low, expected.high))
    assert welch_difference([1.0], c.tolist()) is None


@pytest.mark.parametrize(
    ("ci", "verdict", "failed"),
    [((0.6, 0.9), "regressed", True), ((-0.1, 0.5), "ok", False), ((0.2, 0.9), "inconclusive", False),
     (None, "regressed (no CI)", True)],
)  # fmt: skip
def test_the_interval_against_the_allowed_increase(ci, verdict, failed):
    # baseline 10, threshold 5%: the allowed increase is 0.5
    assert judge(10.0, 10.7, ci, 0.05) == (verdict, failed)


def test_no_ci_and_a_change_within_the_threshold_passes():
    assert judge(10.0, 10.4, None, 0.05) == ("ok (no CI)", False)


def test_an_arm_the_candidate_lacks_fails_and_a_new_one_is_a_note():
    figures = {"all_in_j": Estimate(1.0, (0.9, 1.1))}
    result = check([ArmFigures("a", figures, [])], [ArmFigures("b", figures, [])], 0.05)
    assert result.failed and result.problems[0].startswith("arm a: in the baseline, not in the candidate")
    assert result.notes == ["arm b: new in the candidate (no baseline)"]


def test_a_figure_missing_on_one_side_fails():
    base = ArmFigures("a", {"all_in_j": Estimate(1.0, (0.9, 1.1))}, [])
    cand = ArmFigures("a", {"all_in_j": Estimate(None)}, [])
    result = check([base], [cand], 0.05)
    assert result.failed and "arm a: J/request (all-in) is missing" in result.problems
