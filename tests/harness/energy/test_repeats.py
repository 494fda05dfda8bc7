"""Figures over repeats: hand-computed cases, and coverage against a simulated known truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.energy.repeats import (
    arm_figures,
    pair_differences,
    position_effects,
    t_interval,
    widest_half_width,
)

M = "j_per_request_all_in"


def frame(rows, metric=M):
    """Cells from (repeat, rate, arm, position, status, value) tuples."""
    return pd.DataFrame(rows, columns=["repeat", "rate", "arm", "position", "status", metric])


def hand_interval(values, level):
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(1 - (1 - level) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return v.mean() - half, v.mean() + half


# --- t_interval and arm figures ---------------------------------------------------------------------


def test_t_interval_matches_the_hand_computed_student_t_interval():
    # mean 5, sd sqrt(10/3) over n = 4 (deviations -3, -1, 1, 3 give a sum of squares of 20)
    mean, sd, ci = t_interval([2.0, 4.0, 6.0, 8.0, np.nan], level=0.90)
    half = stats.t.ppf(0.95, 3) * math.sqrt(20 / 3) / 2
    assert mean == 5.0
    assert sd == pytest.approx(math.sqrt(20 / 3))
    assert ci == pytest.approx((5 - half, 5 + half))
    assert t_interval([3.0]) == (3.0, None, None)
    assert math.isnan(t_interval([])[0])
    with pytest.raises(ValueError):
        t_interval([1.0, 2.0], level=1.0)


def test_arm_figures_hand_case_with_nan_rate_group_first_and_non_done_cells_ignored():
    cells = frame(
        [
            (1, 2.0, "x", 0, "done", 10.0),
            (2, 2.0, "x", 0, "done", 12.0),
            (3, 2.0, "x", 0, "done", 14.0),
            (4, 2.0, "x", 0, "failed", 1000.0),  # not done: ignored
            (5, 2.0, "x", 0, "pending", np.nan),
            (1, np.nan, "x", 0, "done", 7.0),  # the arms' own rates: one group, listed first
            (2, np.nan, "x", 0, "done", 9.0),
            (1, 1.0, "x", 0, "done", 5.0),  # a single repeat: no sd, no interval
            (2, 1.0, "x", 0, "done", np.nan),  # done but missing: not a repeat
        ]
    )
    figs = arm_figures(cells, M)
    assert [(f.rate, f.repeats) for f in figs] == [(None, 2), (1.0, 1), (2.0, 3)]
    nan_group, single, three = figs
    assert nan_group.mean == 8.0 and nan_group.ci == pytest.approx(hand_interval([7, 9], 0.95))
    assert (single.mean, single.sd, single.cv, single.ci) == (5.0, None, None, None)
    assert three.mean == 12.0 and three.sd == pytest.approx(2.0) and three.cv == pytest.approx(2 / 12)
    assert three.ci == pytest.approx(hand_interval([10, 12, 14], 0.95))
    assert three.resolution == 0.0 and three.metric == M and three.arm == "x"


def test_arm_interval_widens_by_exactly_the_mean_resolution_bound():
    cells = frame([(r, 1.0, "x", 0, "done", v) for r, v in enumerate([10.0, 11.0, 13.0], 1)])
    cells["resolution_j_per_request"] = [0.2, 0.4, 0.6]
    plain = arm_figures(cells, M)[0]
    widened = arm_figures(cells, M, resolution="resolution_j_per_request")[0]
    assert widened.resolution == pytest.approx(0.4)
    assert widened.ci[0] == pytest.approx(plain.ci[0] - 0.4)
    assert widened.ci[1] == pytest.approx(plain.ci[1] + 0.4)
    assert (widened.mean, widened.sd) == (plain.mean, plain.sd)


def test_missing_columns_raise_and_no_done_cells_give_empty_lists():
    cells = frame([(1, 1.0, "x", 0, "pending", np.nan), (1, 1.0, "y", 1, "failed", 3.0)])
    with pytest.raises(ValueError, match="e2e_p50_s"):
        arm_figures(cells, "e2e_p50_s")
    with pytest.raises(ValueError, match="e2e_p50_s"):
        pair_differences(cells, "e2e_p50_s")
    with pytest.raises(ValueError, match="nope"):
        arm_figures(cells, M, resolution="nope")
    assert arm_figures(cells, M) == pair_differences(cells, M) == position_effects(cells, M) == []
    assert arm_figures(cells.iloc[:0], M) == []


def test_two_done_runs_of_one_cell_are_refused():
    cells = frame([(1, 1.0, "x", 0, "done", 1.0), (1, 1.0, "x", 0, "done", 2.0)])
    with pytest.raises(ValueError, match="two done cells"):
        arm_figures(cells, M)


# --- paired differences -----------------------------------------------------------------------------


def three_arms(values):
    """Cells at one rate from {arm: [value per repeat]} (None: that cell failed)."""
    rows = []
    for pos, (arm, per_repeat) in enumerate(values.items()):
        for repeat, v in enumerate(per_repeat, 1):
            rows.append((repeat, 3.0, arm, pos, "failed" if v is None else "done", v))
    return frame(rows)


def test_pairs_match_by_repeat_and_drop_unpaired_repeats():
    cells = three_arms({"a": [10.0, 11.0, 12.0, 13.0], "b": [9.0, None, 11.5, 11.0]})
    (pair,) = pair_differences(cells, M)
    assert (pair.a, pair.b, pair.rate, pair.repeats) == ("a", "b", 3.0, 3)  # repeat 2 has no b
    diffs = [1.0, 0.5, 2.0]
    assert pair.mean == pytest.approx(np.mean(diffs))
    assert pair.level == 0.95  # one pair: Bonferroni changes nothing
    assert pair.ci == pytest.approx(hand_interval(diffs, 0.95))
    assert pair.relative == pytest.approx(np.mean(diffs) / np.mean([9.0, 11.5, 11.0]))


def test_bonferroni_level_winner_is_the_lower_arm_and_identical_arms_are_not_distinguishable():
    cells = three_arms(
        {
            "a": [10.0, 11.0, 10.5, 10.2],
            "b": [10.0, 11.0, 10.5, 10.2],  # identical to a
            "c": [12.1, 13.0, 12.4, 12.3],  # higher than both by about 2
        }
    )
    pairs = pair_differences(cells, M)
    assert [(p.a, p.b) for p in pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert all(p.level == pytest.approx(1 - 0.05 / 3) for p in pairs)
    ab, ac, bc = pairs
    assert ab.winner is None and ab.verdict == "not distinguishable"
    assert ac.winner == "a" and bc.winner == "b"
    assert ac.verdict.startswith("a lower by 2")
    diffs = np.array([10.0, 11.0, 10.5, 10.2]) - np.array([12.1, 13.0, 12.4, 12.3])
    assert ac.ci == pytest.approx(hand_interval(diffs, 1 - 0.05 / 3))
    # the other way round, b is the lower arm of the pair (c, b) and wins
    flipped = pair_differences(cells[cells["arm"] != "a"].iloc[::-1], M)
    assert [(p.a, p.b, p.winner) for p in flipped] == [("c", "b", "b")]
    assert [p.level for p in pair_differences(cells, M, multiplicity="none")] == [0.95] * 3


def test_pairs_without_two_paired_repeats_have_no_interval_and_stop_nothing():
    # c ran but has no value yet (done, metric missing): still an arm of the pairs, with no repeats
    cells = three_arms({"a": [10.0, 11.0], "b": [9.0, None], "c": [np.nan, np.nan]})
    ab, ac, bc = pair_differences(cells, M)
    assert (ab.repeats, ab.mean, ab.ci, ab.winner) == (1, 1.0, None, None)
    assert ab.verdict == "not distinguishable (fewer than 2 paired repeats)"
    assert (ac.repeats, ac.mean, ac.ci, bc.repeats) == (0, None, None, 0)
    assert ab.level == pytest.approx(1 - 0.05 / 3)  # c counts among the pairs
    assert widest_half_width([ab, ac, bc]) is None
    assert widest_half_width([]) is None


def test_widest_half_width_is_the_largest_half_width():
    cells = three_arms({"a": [10.0, 11.0, 12.0], "b": [9.0, 10.0, 11.5], "c": [1.0, 5.0, 2.0]})
    pairs = pair_differences(cells, M)
    assert widest_half_width(pairs) == pytest.approx(max((p.ci[1] - p.ci[0]) / 2 for p in pairs))
    # b - c = (8, 5, 9.5) scatters most: its Bonferroni interval is the widest
    lo, hi = hand_interval([8.0, 5.0, 9.5], 1 - 0.05 / 3)
    assert widest_half_width(pairs) == pytest.approx((hi - lo) / 2)


# --- position effects -------------------------------------------------------------------------------


def test_position_effect_recovers_a_first_position_penalty():
    # A Latin square of 2 arms over 4 repeats; whichever arm runs first costs 1.0 more.
    rows = []
    for repeat in range(1, 5):
        order = ["a", "b"] if repeat % 2 else ["b", "a"]
        for pos, arm in enumerate(order):
            rows.append((repeat, 1.0, arm, pos, "done", {"a": 10.0, "b": 20.0}[arm] + (pos == 0)))
    rows.append((5, 1.0, "lone", 0, "done", 99.0))  # a single cell: no residual to speak of
    effects = position_effects(frame(rows), M)
    assert [(e.position, e.cells) for e in effects] == [(0, 4), (1, 4)]
    assert effects[0].mean == pytest.approx(0.5) and effects[1].mean == pytest.approx(-0.5)
    assert effects[0].ci == pytest.approx((0.5, 0.5))  # every first-position residual is +0.5


# --- known truth: coverage over simulated experiments -----------------------------------------------

EXPERIMENTS, REPEATS, DRIFT_SD, NOISE_SD = 2000, 4, 0.15, 0.3


def simulate(means, seed):
    """EXPERIMENTS experiments of len(means) arms x REPEATS repeats, stacked as one frame.

    Each experiment gets its own rate (1, 2, ...), so one call computes every experiment's pairs
    independently. A cell is mean x drift + noise: the drift (lognormal, shared by all arms of a repeat)
    is the host's, the noise is the cell's own.
    """
    rng = np.random.default_rng(seed)
    k = len(means)
    drift = rng.lognormal(0.0, DRIFT_SD, size=(EXPERIMENTS, REPEATS, 1))
    values = np.asarray(means) * drift + rng.normal(0.0, NOISE_SD, size=(EXPERIMENTS, REPEATS, k))
    exp, rep, arm = np.meshgrid(np.arange(EXPERIMENTS), np.arange(REPEATS), np.arange(k), indexing="ij")
    cells = pd.DataFrame(
        {
            "repeat": rep.ravel() + 1,
            "rate": exp.ravel() + 1.0,
            "arm": np.array(list("ABCDEFG"[:k]))[arm.ravel()],
            "position": arm.ravel(),  # the order does not matter to this model
            "status": "done",
            M: values.ravel(),
        }
    )
    return cells, values


def by_pair(pairs):
    out = {}
    for p in pairs:
        out.setdefault((p.a, p.b), []).append(p)
    return out


def covered(pairs, truth):
    return np.mean([p.ci[0] <= truth <= p.ci[1] for p in pairs])


def test_paired_intervals_cover_the_known_truth_and_pairing_beats_independent_intervals():
    cells, values = simulate([10.0, 10.0, 12.0], seed=20240601)
    pairs = by_pair(pair_differences(cells, M, multiplicity="none"))
    ab, ac = pairs[("A", "B")], pairs[("A", "C")]
    assert len(ab) == len(ac) == EXPERIMENTS and all(p.repeats == REPEATS for p in ab)
    # E[cell] = mean x E[drift] = mean x exp(sd^2 / 2), so E[A - C] = (10 - 12) x exp(sd^2 / 2).
    true_ac = -2.0 * math.exp(DRIFT_SD**2 / 2)
    assert covered(ab, 0.0) == pytest.approx(0.95, abs=0.015)
    assert covered(ac, true_ac) == pytest.approx(0.95, abs=0.015)
    assert np.mean([p.verdict == "not distinguishable" for p in ab]) == pytest.approx(0.95, abs=0.015)
    # Sanity check that pairing helps: under this drift the independent (two-sample) interval of A - B
    # is several times wider than the paired one.
    sd_a, sd_b = values[..., 0].std(axis=1, ddof=1), values[..., 1].std(axis=1, ddof=1)
    unpaired = stats.t.ppf(0.975, 2 * REPEATS - 2) * np.sqrt((sd_a**2 + sd_b**2) / REPEATS)
    paired = np.array([(p.ci[1] - p.ci[0]) / 2 for p in ab])
    assert np.median(unpaired) > 3 * np.median(paired)


def test_bonferroni_keeps_the_family_wise_false_winner_rate_within_level():
    cells, _ = simulate([10.0, 10.0, 10.0], seed=7)  # three identical arms: any winner is false

    def family_wise(multiplicity):
        pairs = pair_differences(cells, M, multiplicity=multiplicity)
        false_claim = {}
        for p in pairs:
            false_claim[p.rate] = false_claim.get(p.rate, False) or p.winner is not None
        return np.mean(list(false_claim.values()))

    assert family_wise("bonferroni") <= 0.05 + 0.01
    assert family_wise("none") > 0.08  # uncorrected, three pairs claim spurious winners far more often
