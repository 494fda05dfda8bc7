"""harness.report.regression: the intervals of a difference and the verdict rule (docs/ci.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.report.regression import (
    ArmFigures,
    Estimate,
    check,
    judge,
    mover_difference,
    render,
    welch_difference,
)


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
    assert result.failed and "arm a: J/request (all-in) is missing or not finite" in result.problems


def test_a_point_outside_its_own_interval_widens_nothing_on_its_far_side():
    # The candidate's point lies below its interval: its lower half-width is 0, not negative (which,
    # squared, would widen the interval as if the point were inside).
    b, c = Estimate(10.0, (10.0, 10.0)), Estimate(12.0, (12.5, 13.0))
    assert mover_difference(b, c) == pytest.approx((2.0, 3.0))


NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("base", "cand"),
    [(Estimate(10.0), Estimate(NAN)), (Estimate(INF), Estimate(10.0)), (Estimate(10.0, (9.0, 11.0)),
     Estimate(10.0, (NAN, 11.0))), (Estimate(10.0, (-INF, 11.0)), Estimate(10.0, (9.0, 11.0)))],
)  # fmt: skip
def test_a_figure_or_bound_that_is_not_finite_fails_as_missing(base, cand):
    result = check([ArmFigures("a", {"all_in_j": base}, [])], [ArmFigures("a", {"all_in_j": cand}, [])], 0.05)
    assert result.rows[0].verdict == "missing" and result.rows[0].failed
    assert "arm a: J/request (all-in) is missing or not finite" in result.problems
    assert "FAIL: arm a: J/request (all-in) is missing or not finite" in render(result, 0.05)


def _arm(values: list[float], done: tuple[int, int] | None = None) -> ArmFigures:
    figures = {m: Estimate(float(np.mean(values))) for m in ("all_in_j", "ttft_p50_s", "e2e_p50_s")}
    repeats = {m: values for m in figures}
    return ArmFigures("a", figures, [], repeats, done)


def test_the_pass_line_names_the_inconclusive_figures():
    result = check([_arm([10.0, 10.4, 9.8, 10.1])], [_arm([9.0, 14.0, 8.0, 13.0])], 0.05)
    assert not result.failed
    assert render(result, 0.05)[-1] == (
        "PASS: none shown to regress beyond 5% (3 inconclusive: a J/request (all-in), a TTFT p50 (s), "
        "a E2E p50 (s))"
    )
    same = check([_arm([10.0, 10.1])], [_arm([10.0, 10.1])], 0.05)
    assert render(same, 0.05)[-1] == "PASS: none shown to regress beyond 5%"


def test_unfinished_repeats_are_a_note_and_under_two_a_failure():
    base, values = _arm([10.0, 10.4, 9.8, 10.1], (4, 4)), [10.0, 10.2, 9.9]
    result = check([base], [_arm(values, (3, 5))], 0.05)
    assert not result.failed
    assert result.notes == ["arm a: the candidate has 3 of 5 planned repeats done"]
    assert "note: arm a: the candidate has 3 of 5 planned repeats done" in render(result, 0.05)
    result = check([_arm([10.0], (1, 4))], [_arm(values, (3, 3))], 0.05)
    assert result.failed
    assert result.problems == [
        "arm a: the baseline has 1 of 4 planned repeats done, under 2: no interval to judge by"
    ]
    # All that was planned is done: one repeat is the experiment's design, decided by its point (no CI).
    result = check([_arm([10.0], (1, 1))], [_arm([10.1], (1, 1))], 0.05)
    assert not result.failed and result.rows[0].verdict == "ok (no CI)"
