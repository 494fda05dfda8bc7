"""The bound on an arm's p99 lateness: its default from the planned gaps, the flag above it, the
option that overrides it, and closed-loop arms exempt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from energy_synth import MS, S, additive_power, frame, power, series_from_energy, streamed

from harness.energy import AnalysisOptions, ArmWindow, analyze
from harness.energy.figures import (
    LATENESS_CAP_MS,
    LATENESS_FLOOR_MS,
    LATENESS_GAP_SHARE,
    LATENESS_PER_SEND_MS,
    lateness_bound,
)


def _planned(gaps_ms: list[float]) -> np.ndarray:
    return (1_000 * S + np.concatenate([[0.0], np.cumsum(gaps_ms)]) * MS).astype(np.int64)


def test_a_quarter_of_the_median_gap():
    bound = lateness_bound(_planned([100.0] * 30 + [400.0] * 3))
    assert bound is not None and bound.ms == pytest.approx(LATENESS_GAP_SHARE * 100.0) == 25.0
    assert bound.basis == "planned_gaps" and "median planned gap 100 ms" in bound.why


def test_the_floor_for_dense_schedules_and_the_cap_for_sparse_ones():
    dense = lateness_bound(_planned([2.0] * 50))
    sparse = lateness_bound(_planned([7_000.0] * 5))
    assert dense is not None and dense.ms == LATENESS_FLOOR_MS and "floor" in dense.why
    assert sparse is not None and sparse.ms == LATENESS_CAP_MS and "cap" in sparse.why


def test_requests_due_together_add_one_allowance_each():
    # Five bursts of 8 at the same instant, 2.4 s apart: the median gap is 0.
    planned = np.repeat(_planned([2_400.0] * 4), 8)
    bound = lateness_bound(planned[::-1])  # order does not matter
    assert bound is not None
    assert bound.ms == pytest.approx(LATENESS_FLOOR_MS + 7 * LATENESS_PER_SEND_MS)
    assert "7 ms of sending backlog at 1 ms a request" in bound.why
    one_burst = lateness_bound(np.full(200, 5 * S, dtype=np.int64))
    assert one_burst is not None
    assert one_burst.ms == pytest.approx(LATENESS_FLOOR_MS + 199 * LATENESS_PER_SEND_MS)


def test_requests_closer_than_a_send_costs_add_their_backlog():
    # A burst of 100 sent 0.1 ms apart: each send costs more than its gap, so the client falls 0.9 ms
    # further behind at each one (a burst at one instant would be 99 ms; this is 89.1 ms).
    burst = lateness_bound(_planned([0.1] * 99))
    assert burst is not None and burst.ms == pytest.approx(LATENESS_FLOOR_MS + 99 * 0.9)
    # Sends 2 ms apart never queue behind each other: no backlog on top of the floor.
    spaced = lateness_bound(_planned([2.0] * 99))
    assert spaced is not None and spaced.ms == LATENESS_FLOOR_MS and "backlog" not in spaced.why


def test_one_request_has_the_floor_and_none_no_bound():
    single = lateness_bound(_planned([]))
    assert single is not None and single.ms == LATENESS_FLOOR_MS
    assert lateness_bound(np.zeros(0, dtype=np.int64)) is None


# --- in the summary ---------------------------------------------------------------------------------

ARMS = [ArmWindow("a", 10 * S, 22 * S), ArmWindow("b", 22 * S, 34 * S)]


def _frame(late_ms: dict[str, float]) -> pd.DataFrame:
    """Arms a and b, 40 requests each planned 250 ms apart; the last 4 of an arm `late_ms` late."""
    reqs = [
        streamed(i + 40 * k, start + i * 250 * MS, start + i * 250 * MS + S, 50 * MS, 5, arm=arm)
        for k, (arm, start) in enumerate((("a", 10 * S), ("b", 22 * S)))
        for i in range(40)
    ]
    df = frame(reqs)
    for arm, ms in late_ms.items():
        rows = df.index[df["arm"] == arm][-4:]
        df.loc[rows, "lateness_ns"] = int(ms * MS)
    return df, reqs


def _analyze(df: pd.DataFrame, reqs: list, **kw):
    data = power(series_from_energy(additive_power(reqs, 100.0, 60.0), 0, 40 * S, 10 * MS))
    return analyze(df, data, arms=ARMS, **kw)


def test_an_arm_later_than_its_bound_is_an_error_and_the_bound_is_recorded():
    df, reqs = _frame({"b": 300.0})
    a = _analyze(df, reqs)
    late = [f for f in a.flags if f.code == "lateness_over_bound"]
    assert [(f.severity, f.scope) for f in late] == [("error", "b")]
    assert "p99 lateness 300.0 ms" in late[0].message and "bound of 62.5 ms" in late[0].message
    arm_a, arm_b = a.summary["arms"]
    assert arm_b["lateness_ms"]["bound"] == 62.5 and arm_b["lateness_ms"]["bound_basis"] == "planned_gaps"
    assert "lateness_over_bound" in arm_b["flags"] and "lateness_over_bound" not in arm_a["flags"]
    assert arm_a["lateness_ms"]["bound"] == 62.5  # on time: recorded, not flagged
    assert a.summary["run"]["lateness_ms"]["bound"] is None  # the run mixes arms: no bound of its own


def test_on_time_arms_are_not_flagged():
    df, reqs = _frame({"b": 40.0})  # later than usual, within a quarter of the 250 ms gap
    assert not any(f.code == "lateness_over_bound" for f in _analyze(df, reqs).flags)


def test_the_option_overrides_the_default():
    df, reqs = _frame({"a": 40.0, "b": 300.0})
    a = _analyze(df, reqs, options=AnalysisOptions(max_lateness_ms=20.0))
    assert sorted(f.scope for f in a.flags if f.code == "lateness_over_bound") == ["a", "b"]
    assert all(arm["lateness_ms"]["bound_basis"] == "max_lateness_ms" for arm in a.summary["arms"])
    assert a.summary["options"]["max_lateness_ms"] == 20.0
    lenient = _analyze(df, reqs, options=AnalysisOptions(max_lateness_ms=1_000.0))
    assert not any(f.code == "lateness_over_bound" for f in lenient.flags)


def test_closed_loop_arms_are_exempt():
    df, reqs = _frame({"b": 300.0})
    a = _analyze(df, reqs, closed_loop={"b"})
    assert not any(f.code == "lateness_over_bound" for f in a.flags)
    lateness = a.summary["arms"][1]["lateness_ms"]
    assert lateness["bound"] is None and lateness["bound_basis"] == "closed_loop"
    assert lateness["p99"] == pytest.approx(300.0)  # still measured and shown
