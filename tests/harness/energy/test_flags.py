"""Bad or thin data gives clear flags and undefined (null) figures: never a crash, never a silent zero."""

from __future__ import annotations

import json

import numpy as np
import pytest
from energy_synth import MS, S, additive_power, frame, power, series_from_energy, streamed

from harness.energy import ArmWindow, IdleWindows, Window, analyze
from harness.power.series import EnergySeries, PowerData

ARMS = [ArmWindow("a", 10 * S, 33 * S)]
IDLE = IdleWindows(pre=Window(0, 10 * S), post=Window(34 * S, 44 * S))


def _reqs(n: int = 20, **kw) -> list:
    """Request i lives from 11 + i to 13 + i seconds."""
    return [streamed(i, 11 * S + i * S, 13 * S + i * S, 100 * MS, 20, **kw) for i in range(n)]


def _power(reqs, t0=0, t1=45 * S, dt=10 * MS, idle_w=100.0):
    return power(series_from_energy(additive_power(reqs, idle_w, 60.0), t0, t1, dt))


def _codes(a) -> dict[str, str]:
    return {f.code: f.severity for f in a.flags}


def _json_safe(summary: dict) -> None:
    json.dumps(summary, allow_nan=False)  # no NaN leaks into summary.json


def test_clean_run_has_no_warnings():
    reqs = _reqs()
    a = analyze(frame(reqs), _power(reqs), arms=ARMS, idle=IDLE)
    assert {c: s for c, s in _codes(a).items() if s != "info"} == {}
    _json_safe(a.summary)


def test_no_power_data_is_an_error_with_null_energy():
    reqs = _reqs()
    a = analyze(frame(reqs), PowerData([], source="sidecar"), arms=ARMS, idle=IDLE)
    assert _codes(a)["no_power_data"] == "error"
    assert "no_idle_power" not in _codes(a)  # one clear error, not a cascade
    run = a.summary["run"]
    assert run["energy_j_total"] is None and run["j_per_request"]["mean"] is None
    assert a.summary["conservation"]["total_j"] is None
    assert a.requests["energy_j"].isna().all()
    assert run["latency_s"]["e2e"]["n"] == 20  # the rest of the report still stands
    _json_safe(a.summary)


def test_gap_in_power_is_flagged_and_lowers_coverage():
    reqs = _reqs()
    series = _power(reqs).series[0]
    keep = (series.t_ns < 15 * S) | (series.t_ns > 20 * S)  # 5 s without samples
    gappy = EnergySeries("0", series.t_ns[keep], series.energy_j[keep])
    a = analyze(frame(reqs), power(gappy), arms=ARMS, idle=IDLE)
    codes = _codes(a)
    assert codes["power_gaps"] == "warning" and codes["low_coverage"] == "warning"
    cov = a.requests.set_index("request_id")["coverage"]
    assert cov[7] == pytest.approx(0.0) and cov[0] == pytest.approx(1.0)  # request 7 lives 17-19 s
    # The gap's energy is still counted (the counter delta over it is exact).
    assert a.summary["run"]["energy_j_total"] == pytest.approx(
        analyze(frame(reqs), _power(reqs), arms=ARMS, idle=IDLE).summary["run"]["energy_j_total"]
    )


def test_power_covering_part_of_the_run_is_flagged():
    reqs = _reqs()
    a = analyze(frame(reqs), _power(reqs, t0=0, t1=20 * S), arms=ARMS, idle=IDLE)
    codes = _codes(a)
    assert codes["power_partial"] == "warning"
    assert codes["requests_without_power"] == "warning"
    late = a.requests.set_index("request_id")["energy_j"]
    assert np.isnan(late[15]) and late[0] > 0  # after the samples end (at 20 s): null, not zero


def test_power_on_another_clock_is_an_error_not_a_zero():
    """Power timestamps an hour off (a different clock, unmapped): nothing overlaps the run."""
    reqs = _reqs()
    shifted = _power(reqs, t0=3600 * S, t1=3645 * S)
    a = analyze(frame(reqs), shifted, arms=ARMS, idle=IDLE)
    codes = _codes(a)
    assert codes["power_outside_run"] == "error"
    assert "same clock" in next(f.message for f in a.flags if f.code == "power_outside_run")
    assert a.requests["energy_j"].isna().all()
    assert a.summary["run"]["energy_j_total"] is None and a.summary["conservation"]["total_j"] is None
    _json_safe(a.summary)


def test_clock_offset_uncertainty_is_reported_and_flagged_when_large():
    reqs = _reqs()
    small = _power(reqs).series
    clock = {"mode": "offset", "uncertainty_ns": 100_000}
    a = analyze(frame(reqs), PowerData(small, "sidecar", clock=clock), arms=ARMS, idle=IDLE)
    assert _codes(a)["clock_offset"] == "info" and "clock_uncertain" not in _codes(a)
    clock = {"mode": "offset", "uncertainty_ns": 400 * MS}
    a = analyze(frame(reqs), PowerData(small, "sidecar", clock=clock), arms=ARMS, idle=IDLE)
    assert _codes(a)["clock_uncertain"] == "warning"


def test_zero_successful_requests():
    reqs = _reqs(status="http_error")
    a = analyze(frame(reqs), _power(reqs), arms=ARMS, idle=IDLE)
    assert _codes(a)["no_successful_requests"] == "error"
    arm = a.summary["arms"][0]
    assert arm["j_per_request"]["mean"] is None and arm["all_in"]["j_per_request"] is None
    assert "no_successful_requests" in arm["flags"]
    # Failed requests still used energy: it is attributed to them and reported, not dropped.
    assert arm["energy_j_failed"] == pytest.approx(arm["energy_j_attributed"])
    assert arm["requests"]["by_status"] == {"http_error": 20}
    _json_safe(a.summary)


def test_no_requests_at_all():
    a = analyze(frame([]), _power([]), arms=ARMS, idle=IDLE)
    assert _codes(a)["no_successful_requests"] == "error"
    assert a.summary["run"]["energy_j_unattributed"] == pytest.approx(a.summary["run"]["energy_j_total"])
    _json_safe(a.summary)


def test_idle_drift_is_flagged_and_linear_mode_follows_it():
    reqs = _reqs()
    t = np.arange(0, 45 * S + 1, 10 * MS)
    base = additive_power(reqs, 0.0, 60.0)
    drifting = base(t) + (100.0 * t / S + 0.5 * 1.0 * (t / S) ** 2)  # idle rises 100 -> 145 W
    series = EnergySeries("0", t, drifting)
    a = analyze(frame(reqs), power(series), arms=ARMS, idle=IDLE)
    assert _codes(a)["idle_drift"] == "warning"
    idle = a.summary["idle"]
    assert idle["pre_w"] < idle["post_w"] and idle["drift"] > 0.1
    lin = analyze(frame(reqs), power(series), arms=ARMS, idle=IdleWindows(IDLE.pre, IDLE.post, mode="linear"))
    assert lin.summary["idle"]["mode"] == "linear"
    # A linear idle tracks the drift: the dynamic part comes out closer to the true 60 W per request.
    truth = 60.0 * 2.0
    err_lin = abs(lin.requests["dynamic_j"] - truth).mean()
    err_mean = abs(a.requests["dynamic_j"] - truth).mean()
    assert err_lin < err_mean


def test_without_idle_windows_idle_comes_from_the_run_and_is_flagged():
    reqs = [streamed(i, (11 + 3 * i) * S, (12 + 3 * i) * S, 100 * MS, 20) for i in range(6)]
    a = analyze(frame(reqs), _power(reqs), arms=ARMS, idle=None)
    assert _codes(a)["idle_from_run"] == "warning"
    assert a.summary["idle"]["power_w"] == pytest.approx(100.0, rel=0.01)
    busy = [streamed(i, 10 * S + i * 100 * MS, 40 * S, 100 * MS, 20) for i in range(5)]
    a = analyze(frame(busy), _power(busy), arms=[ArmWindow("a", 10 * S, 40 * S)], idle=None)
    assert _codes(a)["no_idle_power"] == "warning"
    assert a.summary["idle"]["power_w"] == 0.0
    assert a.requests["idle_j"].abs().max() == 0.0


def test_power_below_idle_is_clamped_not_negative():
    reqs = _reqs()
    a = analyze(frame(reqs), _power(reqs, idle_w=100.0), arms=ARMS, idle=IDLE)
    low = _power(reqs, idle_w=60.0).series[0]  # the GPU draws less than the idle windows said
    windows = _power(reqs, idle_w=100.0).series[0]
    mixed = np.where((low.t_ns > 9 * S) & (low.t_ns < 33 * S), low.energy_j, windows.energy_j)
    mixed = np.maximum.accumulate(mixed)
    a = analyze(frame(reqs), power(EnergySeries("0", low.t_ns, mixed)), arms=ARMS, idle=IDLE)
    assert _codes(a).get("idle_clamped") == "warning"
    assert (a.requests[["energy_j", "idle_j", "dynamic_j"]].to_numpy() >= 0).all()


def test_short_windows_are_flagged():
    reqs = [streamed(0, 10 * S, 11 * S, 100 * MS, 10)]
    a = analyze(frame(reqs), _power(reqs), arms=[ArmWindow("a", 10 * S, 12 * S)],
                idle=IdleWindows(pre=Window(8 * S, 9 * S)))  # fmt: skip
    short = [f for f in a.flags if f.code == "short_window"]
    assert {f.scope for f in short} >= {"a", "run"}
    assert any("idle" in f.message for f in short)


def test_derived_arm_windows_and_overlap():
    reqs = _reqs(10) + [
        streamed(100 + i, 30 * S + i * S, 31 * S + i * S, 100 * MS, 10, arm="b") for i in range(5)
    ]
    a = analyze(frame(reqs), _power(reqs), arms=None, idle=IDLE)
    assert [arm["name"] for arm in a.summary["arms"]] == ["a", "b"]
    assert all(arm["window"]["derived"] for arm in a.summary["arms"])
    assert _codes(a)["arm_window_derived"] == "info"
    # A window for arm a that ends before its requests do: the spill is accounted and flagged.
    a = analyze(
        frame(reqs), _power(reqs), arms=[ArmWindow("a", 9 * S, 15 * S), ArmWindow("b", 15 * S, 40 * S)]
    )
    codes = {(f.code, f.scope) for f in a.flags}
    assert ("arm_overlap", "a") in codes and ("arm_overlap", "b") in codes
    arm_a = a.summary["arms"][0]
    assert arm_a["energy_j_outside_window"] > 0
    own = a.requests.loc[a.requests["arm"] == "a", "energy_j"].sum()
    inside = arm_a["energy_j_attributed"] - arm_a["energy_j_other_arms"]
    assert own == pytest.approx(inside + arm_a["energy_j_outside_window"])


def test_missing_token_counts_are_flagged_for_the_tokens_method():
    reqs = _reqs(prompt_tokens=None)
    a = analyze(frame(reqs), _power(reqs), arms=ARMS, idle=IDLE, method="tokens")
    assert _codes(a)["tokens_missing"] == "warning"
    assert a.requests["energy_j"].notna().all()


def test_unstreamed_requests_have_no_phase_split():
    reqs = _reqs(stream=False)
    a = analyze(frame(reqs), _power(reqs), arms=ARMS, idle=IDLE)
    assert a.requests["prefill_j"].isna().all() and a.requests["energy_j"].notna().all()


def test_bad_method_and_missing_columns_are_input_errors():
    from foundation.errors import InputError

    reqs = _reqs(2)
    with pytest.raises(InputError, match="method"):
        analyze(frame(reqs), _power(reqs), arms=ARMS, method="watts")
    with pytest.raises(InputError, match="done_ns"):
        analyze(frame(reqs).drop(columns=["done_ns"]), _power(reqs), arms=ARMS)


def test_a_failed_warmup_is_flagged_and_a_stopped_one_is_not():
    reqs = _reqs()
    warm = [streamed(-1 - i, 10 * S + i * MS, 10 * S + 500 * MS, 100 * MS, 5, warmup=True) for i in range(3)]
    for r, status in zip(warm, ("ok", "http_error", "cancelled"), strict=True):
        r.status = status
    a = analyze(frame([*warm, *reqs]), _power(reqs), arms=ARMS, idle=IDLE)
    (flag,) = [f for f in a.flags if f.code == "warmup_failed"]
    assert flag.severity == "warning" and flag.message.startswith("1 of 3 warm-up requests did not succeed")
    warm[1].status = "ok"  # an error-free warm-up: only the Ctrl-C's cancelled one is left, not a failure
    assert "warmup_failed" not in _codes(analyze(frame([*warm, *reqs]), _power(reqs), arms=ARMS, idle=IDLE))
