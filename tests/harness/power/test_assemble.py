"""Building one GPU's EnergySeries: counter anchors, power shape, resets, gaps, window coverage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.power.sources.assemble import build_series, stitch_resets

S = 1_000_000_000


def test_exact_at_counter_readings_and_shaped_by_power_between():
    # Counter every 0.5 s; power at 10 Hz: 100 W in the first half of each period, 300 W in the second.
    at = np.arange(0, 5 * S + 1, S // 2)
    ae = np.arange(len(at)) * 100.0  # 100 J per half second = 200 W on average
    pt = np.arange(0, 5 * S, S // 10)
    pw = np.where((pt % (S // 2)) < S // 4, 100.0, 300.0)
    s = build_series("0", at, ae, pt, pw, source="test")
    assert set(at.tolist()) <= set(s.t_ns.tolist())
    assert s.energy_j[np.searchsorted(s.t_ns, at)] == pytest.approx(ae)  # exact at every reading
    assert np.all(np.diff(s.t_ns) > 0) and np.all(np.diff(s.energy_j) >= 0)
    # Inside a period the split follows power: the 300 W half holds more than the 100 W half.
    i_mid = np.searchsorted(s.t_ns, S // 4)
    assert 0 < s.energy_j[i_mid] < 50.0
    assert s.power_w is not None and np.nanmax(s.power_w) == 300.0
    assert s.issues == [] and s.source == "test" and not s.integrated


def test_linear_between_readings_without_power():
    s = build_series("3", np.array([0, 2 * S]), np.array([10.0, 30.0]), source="t")
    assert s.t_ns.tolist() == [0, 2 * S] and s.energy_j.tolist() == [10.0, 30.0] and s.power_w is None


def test_resets_are_stitched_and_reported():
    t = np.arange(6) * S
    raw = np.array([100.0, 110.0, 120.0, 5.0, 15.0, 25.0])  # driver reload between 2 s and 3 s
    stitched = stitch_resets(t, raw)
    assert stitched.restarts == [(3, "reset")] and stitched.dropped == []
    assert stitched.energy_j.tolist() == [100, 110, 120, 125, 135, 145]
    s = build_series("0", t, raw, source="t")
    assert s.energy_j.tolist() == [100, 110, 120, 125, 135, 145]
    assert any("reset between +2.0 s and +3.0 s" in i for i in s.issues)


def test_one_zero_between_consistent_readings_is_a_bad_read_not_a_reset():
    """The adversarial trial's case: one reading of 0 mid-run was stitched as a reset and carried the
    whole counter forward again (+48.7%). It is dropped, and said."""
    t = np.arange(6) * S
    raw = np.array([861_000.0, 861_200.0, 861_400.0, 0.0, 861_800.0, 862_000.0])
    stitched = stitch_resets(t, raw)
    assert stitched.restarts == [] and stitched.dropped == [(3 * S, "glitch")]
    s = build_series("0", t, raw, source="t")
    assert s.t_ns.tolist() == [0, S, 2 * S, 4 * S, 5 * S]
    assert s.energy_j[-1] - s.energy_j[0] == 1000.0  # the counter's own difference, nothing added
    (issue,) = s.issues
    assert "1 energy counter reading(s) left out, at +3.0 s: each a lone drop" in issue


def test_a_drop_that_does_not_restart_from_near_zero_is_a_jump_not_counted_twice():
    # Down from 1 MJ to 400 kJ and rising from there: no reset (a GPU cannot count 400 kJ in a second),
    # so nothing is carried across: the energy between the two readings is missing, not doubled.
    t = np.arange(5) * S
    raw = np.array([1_000_000.0, 1_000_200.0, 400_000.0, 400_200.0, 400_400.0])
    stitched = stitch_resets(t, raw)
    assert stitched.restarts == [(2, "jump")]
    assert stitched.energy_j.tolist() == [1_000_000, 1_000_200, 1_000_200, 1_000_400, 1_000_600]
    s = build_series("0", t, raw, source="t")
    assert any("jumped to another level between +1.0 s and +2.0 s" in i for i in s.issues)


def test_bad_values_and_an_unconfirmed_last_drop_are_left_out_and_reported():
    t = np.arange(6) * S
    raw = np.array([100.0, np.nan, 120.0, -5.0, 130.0, 3.0])
    stitched = stitch_resets(t, raw)
    assert stitched.t_ns.tolist() == [0, 2 * S, 4 * S] and stitched.energy_j.tolist() == [100, 120, 130]
    assert stitched.dropped == [(S, "invalid"), (3 * S, "invalid"), (5 * S, "unconfirmed")]
    s = build_series("0", t, raw, source="t")
    bad = "2 energy counter reading(s) left out, at +1.0 s to +3.0 s: not a number"
    assert any(bad in i for i in s.issues)
    assert any("no later one to tell a reset from a bad read" in i for i in s.issues)


def test_only_what_touches_the_window_is_reported():
    t = np.arange(10) * S
    raw = np.array([100.0, 0.0, 120.0, 130.0, 140.0, 150.0, 160.0, 170.0, 5.0, 15.0])
    inside = build_series("0", t, raw, source="t", start_ns=3 * S, end_ns=6 * S)
    assert inside.issues == []  # a bad read at 1 s and a reset after 7 s: both outside [3 s, 6 s]
    around = build_series("0", t, raw, source="t", start_ns=0, end_ns=9 * S)
    assert len(around.issues) == 2


def test_gaps_are_reported_not_hidden():
    t = np.array([0, 1, 2, 9, 10]) * S // 2  # readings every 0.5 s, then 3.5 s of nothing
    s = build_series("1", t, np.arange(5.0), source="t", expected_period_s=0.5)
    (gap,) = s.issues
    assert "gap of 3.5 s without energy readings from +1.0 s" in gap


def test_window_is_bracketed_and_coverage_reported():
    t = np.arange(0, 11) * S
    e = np.arange(11) * 2.0
    s = build_series("0", t, e, source="t", start_ns=int(3.5 * S), end_ns=int(6.5 * S))
    assert s.t_ns.tolist() == [3 * S, 4 * S, 5 * S, 6 * S, 7 * S]  # the readings around the window
    assert s.issues == []
    late = build_series("0", t, e, source="t", start_ns=-5 * S, end_ns=20 * S, expected_period_s=1.0)
    assert any("first reading is 5.0 s after the window start" in i for i in late.issues)
    assert any("stale: the last reading is 10.0 s before the window end" in i for i in late.issues)
    empty = build_series("0", t[:0], e[:0], source="t", start_ns=0, end_ns=S)
    assert empty.issues == ["GPU 0: no energy readings in the requested window"] and len(empty.t_ns) == 0


def test_duplicate_and_unsorted_readings():
    t = np.array([2, 0, 1, 1]) * S
    e = np.array([3.0, 1.0, 2.0, 2.0])
    s = build_series("0", t, e, source="t")
    assert s.t_ns.tolist() == [0, S, 2 * S] and s.energy_j.tolist() == [1.0, 2.0, 3.0]


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(0, 500), min_size=2, max_size=30),
    powers=st.lists(st.floats(0, 700), min_size=1, max_size=80),
    resets=st.sets(st.integers(1, 29), max_size=3),
    glitches=st.sets(st.integers(1, 28), max_size=3),
)
def test_conservation_and_monotonicity(steps, powers, resets, glitches):
    """Whatever the power shape, resets and lone bad reads, the series passes through every reading it
    keeps, never decreases, and never counts more than the GPU did."""
    at = np.arange(len(steps), dtype=np.int64) * (S // 2)
    raw = np.cumsum(steps)
    for r in sorted(resets):
        if r < len(raw):
            raw[r:] -= raw[r - 1]  # the counter restarts from zero
    for g in glitches:
        if g < len(raw) - 1:
            raw[g] = 0.0  # one bad read of 0
    pt = np.linspace(0, at[-1], len(powers)).astype(np.int64)
    s = build_series("0", at, raw, pt, np.array(powers), source="t")
    expected = stitch_resets(at, raw)
    idx = np.searchsorted(s.t_ns, expected.t_ns)
    assert s.t_ns[idx].tolist() == expected.t_ns.tolist()
    assert s.energy_j[idx] == pytest.approx(expected.energy_j, abs=1e-6)
    assert np.all(np.diff(s.energy_j) >= -1e-9)
    assert s.energy_j[-1] - s.energy_j[0] <= sum(steps[1:]) + 1e-6
