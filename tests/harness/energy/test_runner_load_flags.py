"""The runner's own figures (event-loop lag, CPU share) travel in the manifest's arms and become flags in
the summary after the join: a loop lagging beyond its bound is an error, a saturated CPU a warning, a
run without the figures keeps None (issue 19)."""

from __future__ import annotations

from typing import Any

from harness.energy.client_load import LOOP_LAG_BOUND_MS, add_runner_figures, flag_capped
from harness.energy.flags import Flag, FlagList


def _summary() -> Any:
    client = {"in_flight_max": 3, "in_flight_p99": 3.0, "capped": 0, "capped_ms_max": None,
              "loop_lag_ms": None, "loop_lag_bound_ms": None, "cpu_share": None}  # fmt: skip
    arm = {"name": "fixed", "client": dict(client), "flags": ["failed_requests"]}
    return {"arms": [arm], "run": {"name": "run", "client": dict(client), "flags": []}, "flags": []}


def _lag(p99: float) -> dict[str, float]:
    return {"n": 100, "mean": p99 / 2, "p50": p99 / 3, "p90": p99 / 2, "p99": p99, "max": p99 * 1.5}


def _manifest(p99: float, share: float = 0.2, bound: float | None = None) -> dict[str, Any]:
    arms = [{"name": "fixed", "client": {"cpu_share": share, "loop_lag_ms": _lag(p99)}}]
    return {"arms": arms, "options": {"max_loop_lag_ms": bound}}


def test_a_loop_lagging_past_the_default_bound_is_a_warning_on_its_arm() -> None:
    summary, flags = _summary(), []
    add_runner_figures(summary, flags, _manifest(LOOP_LAG_BOUND_MS + 5))
    (flag,) = flags
    assert (flag.code, flag.severity, flag.scope) == ("loop_lag_over_bound", "warning", "fixed")
    assert summary["arms"][0]["flags"] == ["failed_requests", "loop_lag_over_bound"]
    assert summary["run"]["flags"] == ["loop_lag_over_bound"]
    assert summary["flags"] == [flag.as_dict()]
    client = summary["arms"][0]["client"]
    assert client["loop_lag_ms"]["p99"] == LOOP_LAG_BOUND_MS + 5 and client["cpu_share"] == 0.2


def test_under_its_bound_nothing_is_flagged_and_the_run_option_sets_the_bound() -> None:
    summary, flags = _summary(), []
    add_runner_figures(summary, flags, _manifest(LOOP_LAG_BOUND_MS - 5))
    assert flags == [] and summary["arms"][0]["client"]["loop_lag_bound_ms"] == LOOP_LAG_BOUND_MS
    tight: list[Flag] = []
    add_runner_figures(_summary(), tight, _manifest(0.5, bound=0.1))
    assert [(f.code, f.severity) for f in tight] == [("loop_lag_over_bound", "error")]  # the user's bound


def test_a_saturated_client_cpu_is_a_warning() -> None:
    flags: list[Flag] = []
    add_runner_figures(_summary(), flags, _manifest(1.0, share=0.97))
    assert [(f.code, f.severity) for f in flags] == [("client_cpu_saturated", "warning")]


def test_a_run_without_the_runners_figures_keeps_none() -> None:
    summary, flags = _summary(), []
    add_runner_figures(summary, flags, {"arms": [{"name": "fixed"}], "options": {}})
    assert flags == [] and summary["arms"][0]["client"]["loop_lag_ms"] is None


def test_requests_held_at_the_cap_are_an_error() -> None:
    flags = FlagList()
    client = _summary()["arms"][0]["client"]
    flag_capped(client, flags, "fixed")
    assert flags == []
    flag_capped({**client, "capped": 4, "capped_ms_max": 12.5}, flags, "fixed")
    (flag,) = flags
    assert (
        flag.code == "in_flight_capped" and flag.severity == "error" and "4 requests waited" in flag.message
    )
