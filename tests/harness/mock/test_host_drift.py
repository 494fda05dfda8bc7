"""Host drift (`step_time.drift_cv`, `drift_time_s`): off changes nothing; on, a seeded, stationary,
slowly varying multiplier on step durations at unchanged power, so the same workload costs a
different energy per request at different times; settable on the server with `--set`."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import httpx
import numpy as np
import pytest
from joulebench_testkit import one_line_error, run_main, run_mock_server

from harness.mock.engine import RequestSpec, Simulator, Step
from harness.mock.host_drift import HostDrift
from harness.mock.profile import Profile, builtin_profiles, load_profile, parse_profile

PROFILES = Path(__file__).resolve().parents[3] / "harness" / "mock" / "profiles"


def make_profile(**step_time: float) -> Profile:
    """synthetic-fast with 10 ms steps whatever the batch, and per-token joules (power varies by step)."""
    return load_profile("synthetic-fast").with_changes(
        step_time={"base_s": 0.01, "per_decode_seq_s": 0.0, "per_prefill_token_s": 0.0, **step_time},
        power={"idle_w": 100.0, "busy_w": 300.0, "per_decode_token_j": 0.01, "per_prefill_token_j": 0.001},
    )


class Steps:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    def step_done(self, step: Step) -> None:
        self.steps.append(step)


def mixed_workload(profile: Profile, seed: int = 3) -> tuple[list[tuple], list[tuple], float]:
    """Steps, requests and the energy counter of a workload that batches, stops at EOS and idles."""
    steps = Steps()
    sim = Simulator(profile, seed=seed, listener=steps)
    reqs = [sim.submit(RequestSpec(40 + 7 * i, 200), at=0.004 * i + (i // 20) * 2.0) for i in range(60)]
    sim.run_until_idle()
    timeline = [(s.start, s.end, s.power_w, s.n_decode, s.n_prefill_tokens, s.drift) for s in steps.steps]
    return timeline, [(r.generated, r.first_token, r.finished) for r in reqs], sim.read_gpu().energy_j


def test_profiles_without_the_drift_fields_load_with_drift_off():
    for name in builtin_profiles():  # none has the fields today; a refit writes them at their defaults
        data = json.loads((PROFILES / f"{name}.json").read_text())
        for field in ("drift_cv", "drift_time_s"):
            data["step_time"].pop(field, None)
        step_time = parse_profile(json.dumps(data), origin=name).step_time
        assert (step_time.drift_cv, step_time.drift_time_s) == (0.0, 60.0)


def test_drift_off_is_exactly_a_profile_without_the_fields():
    without = load_profile()  # the file has no drift fields
    off = without.with_changes(step_time={"drift_cv": 0.0, "drift_time_s": 5.0})
    assert mixed_workload(off) == mixed_workload(without)  # floats compared exactly
    timeline, _, _ = mixed_workload(without)
    assert {row[-1] for row in timeline} == {1.0}


def test_drift_stretches_steps_at_unchanged_power_and_leaves_output_lengths_alone():
    on = load_profile().with_changes(step_time={"drift_cv": 0.2, "drift_time_s": 1.0})
    off_reqs = mixed_workload(load_profile())[1]
    on_steps, on_reqs, energy = mixed_workload(on)
    assert [r[0] for r in on_reqs] == [r[0] for r in off_reqs]  # output lengths: their own stream
    assert len({row[-1] for row in on_steps}) > 100
    st, pw = on.step_time, on.power
    for start, end, power, n_decode, n_prefill, drift in on_steps:
        undrifted = st.base_s + st.per_decode_seq_s * n_decode + st.per_prefill_token_s * n_prefill
        assert end - start == pytest.approx(undrifted * drift, rel=1e-9)  # no step here hits the limit
        tokens_j = pw.per_decode_token_j * n_decode + pw.per_prefill_token_j * n_prefill
        assert power == pytest.approx(pw.busy_w + tokens_j / undrifted, rel=1e-12)  # as without drift
    busy = math.fsum(power * (end - start) for start, end, power, *_ in on_steps)
    idle = on.power.idle_w * (on_steps[-1][1] - math.fsum(end - start for start, end, *_ in on_steps))
    assert energy == pytest.approx(busy + idle, rel=1e-9)


def test_a_throttled_step_stays_at_the_power_limit_and_is_stretched_by_the_drift_too():
    profile = make_profile(drift_cv=0.2).with_changes(power={"per_prefill_token_j": 0.05})
    steps = Steps()
    sim = Simulator(profile, listener=steps)
    sim.submit(RequestSpec(4000, 1, ignore_eos=True), at=1.0)
    sim.run_until_idle()
    (step,) = steps.steps
    limit = profile.gpu.power_limit_w
    energy = 300.0 * 0.01 + 4000 * 0.05  # 20 kW over the 10 ms step: far above the limit
    assert step.power_w == limit and step.drift != 1.0
    assert step.end - step.start == pytest.approx(energy / limit * step.drift, rel=1e-12)


def test_same_seed_same_drift_other_seed_other_drift():
    on = load_profile().with_changes(step_time={"drift_cv": 0.2, "drift_time_s": 1.0})
    assert mixed_workload(on, seed=5) == mixed_workload(on, seed=5)
    assert mixed_workload(on, seed=5)[0] != mixed_workload(on, seed=6)[0]


def test_multiplier_over_a_long_run_has_sd_drift_cv_and_autocorrelation_exp_minus_1_at_drift_time():
    cv, tau = 0.2, 0.5
    profile = make_profile(drift_cv=cv, drift_time_s=tau)
    steps = Steps()
    sim = Simulator(profile, seed=11, listener=steps)
    # Back-to-back requests of 8,000 decode steps (~80 s each): the GPU is never idle for ~2,000 tau.
    for i in range(13):
        sim.submit(RequestSpec(1, 8000, ignore_eos=True), at=70.0 * i)
    sim.run_until_idle()
    start, end = np.array([s.start for s in steps.steps]), np.array([s.end for s in steps.steps])
    multiplier = (end - start) / profile.step_time.base_s
    assert np.array_equal(start[1:], end[:-1])  # no idle gap
    # The multiplier in force on a regular grid (a step's value holds until the next step starts).
    grid = np.arange(start[0], start[-1], tau / 10)
    series = multiplier[np.searchsorted(start, grid, side="right") - 1]
    assert series.mean() == pytest.approx(1.0, abs=0.02)
    assert series.std() == pytest.approx(cv, rel=0.1)

    def autocorrelation(x: np.ndarray, lag: int) -> float:
        return float(np.corrcoef(x[:-lag], x[lag:])[0, 1])

    assert autocorrelation(series, 10) == pytest.approx(math.exp(-1), abs=0.05)
    assert autocorrelation(np.log(series), 10) == pytest.approx(math.exp(-1), abs=0.05)
    assert abs(autocorrelation(series, 100)) < 0.1  # 10 tau: forgotten


def test_transition_is_exact_however_often_it_is_sampled():
    # log m at 0 and at tau, reached in one jump or in 50 small ones: the same correlation, exp(-1).
    step_time = make_profile(drift_cv=0.2, drift_time_s=1.0).step_time

    def pairs(hops: int) -> tuple[list[float], list[float]]:
        first, last = [], []
        for seed in range(3000):
            drift = HostDrift(step_time, seed)
            first.append(math.log(drift.at(0.0)))
            for k in range(1, hops + 1):
                value = drift.at(k / hops)
            last.append(math.log(value))
        return first, last

    for hops in (1, 50):
        first, last = pairs(hops)
        assert statistics.correlation(first, last) == pytest.approx(math.exp(-1), abs=0.05)
        assert statistics.stdev(last) == pytest.approx(math.sqrt(math.log1p(0.2**2)), rel=0.06)


def test_a_repeated_time_gives_the_same_multiplier():
    drift = HostDrift(make_profile(drift_cv=0.3).step_time, seed=1)
    assert drift.at(2.0) == drift.at(2.0) != drift.at(2.5)


def wave_j_per_request(profile: Profile, windows: list[float], seed: int = 2) -> list[float]:
    """The same wave of 16 requests at each window's start, on one simulator: energy per request."""
    sim = Simulator(profile, seed=seed)
    out = []
    for at in windows:
        sim.advance_to(at)
        before = sim.read_gpu().energy_j
        for _ in range(16):
            sim.submit(RequestSpec(200, 128, ignore_eos=True), at=at)
        sim.run_until_idle()
        out.append((sim.read_gpu().energy_j - before) / 16)
    return out


def test_energy_per_request_of_one_workload_differs_between_far_apart_windows_only_with_drift():
    windows = [600.0 * k for k in range(20)]  # 10 drift times apart
    off = wave_j_per_request(make_profile(), windows)
    assert off == pytest.approx([off[0]] * len(off), rel=1e-9)
    on = wave_j_per_request(make_profile(drift_cv=0.2, drift_time_s=60.0), windows)
    assert abs(on[1] / on[0] - 1) > 0.02
    # A wave lasts ~1 s << drift_time_s, and every joule of it scales with the drift: spread ~ cv.
    assert 0.1 < statistics.stdev(on) / statistics.mean(on) < 0.3


def test_bad_drift_settings_are_one_line_errors(capsys):
    for setting in ("step_time.drift_cv=-0.1", "step_time.drift_time_s=0"):
        status = run_main(["mock-server", "--port", "0", "--set", setting])
        message = one_line_error(capsys.readouterr().err, status)
        assert setting.split("=")[0] in message


def test_server_accepts_drift_with_set_and_serves(tmp_path):
    seed = 4
    step = 0.001  # synthetic-fast's step, whatever the batch
    with run_mock_server(
        "--profile", "synthetic-fast", "--seed", str(seed),
        "--set", "step_time.drift_cv=0.2", "--set", "step_time.drift_time_s=3600",
        log_dir=tmp_path,
    ) as mock:  # fmt: skip
        body = {"model": "mock", "prompt": "hi", "max_tokens": 32}
        answer = httpx.post(mock.url + "/v1/completions", json=body, timeout=10)
        metrics = httpx.get(mock.url + "/metrics", timeout=10).text
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 32

    def value(name: str) -> float:
        return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(name))

    # 31 gaps between tokens, one step each, stretched by the drift: over seconds of an hour-long
    # drift time, still about the value the seed drew at the server's start.
    itl = value("vllm:inter_token_latency_seconds_sum") / value("vllm:inter_token_latency_seconds_count")
    drift = HostDrift(make_profile(drift_cv=0.2, drift_time_s=3600).step_time, seed).at(0.0)
    assert abs(drift - 1) > 0.05  # so that the check below tells drift from none
    assert itl / step == pytest.approx(drift, rel=0.03)
