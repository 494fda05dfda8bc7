"""The discrete-event simulator on its virtual clock: scheduling, KV cache, timing, power, determinism."""

from __future__ import annotations

import math

import pytest

from harness.mock.engine import DONE, RequestSpec, Simulator
from harness.mock.gpu import integrate_trace
from harness.mock.profile import Profile, load_profile


def make_profile(**sections) -> Profile:
    """A small, exact profile: 1 ms base step, 0.1 ms per decode sequence, 10 us per prefill token."""
    base = load_profile("synthetic-fast").with_changes(
        step_time={"base_s": 0.001, "per_decode_seq_s": 0.0001, "per_prefill_token_s": 0.00001},
        power={"idle_w": 100.0, "busy_w": 300.0, "per_decode_token_j": 0.01, "per_prefill_token_j": 0.001},
        scheduler={
            "max_num_seqs": 256,
            "max_num_batched_tokens": 4096,
            "kv_cache_tokens": 1 << 20,
            "max_model_len": 4096,
        },
    )
    return base.with_changes(**sections) if sections else base


class Steps:
    def __init__(self) -> None:
        self.steps = []

    def step_done(self, step) -> None:
        self.steps.append(step)


def test_single_request_timeline_is_exact():
    profile = make_profile(
        frontend={"latency_s": 0.01, "admit_cpu_s": 0.002, "admit_cpu_s_per_request": 0.0005}
    )
    sim = Simulator(profile)
    req = sim.submit(RequestSpec(prompt_tokens=100, max_tokens=5, ignore_eos=True), at=1.0)
    sim.run_until_idle()
    admitted = 1.0 + 0.01 + 0.002 + 0.0005 * 1  # latency, then admission with itself in flight
    assert req.admitted == pytest.approx(admitted)
    prefill = 0.001 + 100 * 0.00001
    assert req.first_token == pytest.approx(admitted + prefill)
    decode = 0.001 + 0.0001
    assert req.finished == pytest.approx(admitted + prefill + 4 * decode)
    assert (req.generated, req.finish_reason, req.state) == (5, "length", DONE)
    assert sim.free_blocks == sim.total_blocks


def test_frontend_admits_one_at_a_time_and_slows_with_requests_in_flight():
    profile = make_profile(frontend={"admit_cpu_s": 0.002, "admit_cpu_s_per_request": 0.001})
    sim = Simulator(profile)
    reqs = [sim.submit(RequestSpec(10, 1000, ignore_eos=True), at=0.0) for _ in range(4)]
    sim.run_until_idle()
    # In flight at each admission: all 4 (queued or admitted, none finished yet: 1000 tokens to go).
    expected, t = [], 0.0
    for _ in reqs:
        t += 0.002 + 0.001 * 4
        expected.append(t)
    assert [r.admitted for r in reqs] == pytest.approx(expected)


def test_batch_is_limited_by_max_num_seqs_and_all_requests_complete():
    steps = Steps()
    sim = Simulator(make_profile(scheduler={"max_num_seqs": 3}), listener=steps)
    reqs = [sim.submit(RequestSpec(20, 10, ignore_eos=True), at=0.0) for _ in range(10)]
    sim.run_until_idle()
    assert max(len(s.batch) for s in steps.steps) == 3
    assert all(r.generated == 10 and r.state == DONE for r in reqs)
    assert sim.generation_tokens_total == 100


def test_long_prompt_prefills_in_chunks_within_the_token_budget():
    steps = Steps()
    sim = Simulator(make_profile(scheduler={"max_num_batched_tokens": 100}), listener=steps)
    req = sim.submit(RequestSpec(250, 2, ignore_eos=True), at=0.0)
    sim.run_until_idle()
    assert [s.n_prefill_tokens for s in steps.steps[:3]] == [100, 100, 50]
    assert req.first_token == pytest.approx(steps.steps[2].end)
    assert all(s.n_decode + s.n_prefill_tokens <= 100 for s in steps.steps)


def test_kv_cache_full_preempts_and_every_request_still_finishes():
    # Room for 1,024 tokens: four requests growing to 200 + 300 tokens cannot all stay resident.
    steps = Steps()
    profile = make_profile(scheduler={"kv_cache_tokens": 1024, "max_model_len": 1024, "block_size": 16})
    sim = Simulator(profile, listener=steps)
    reqs = [sim.submit(RequestSpec(200, 300, ignore_eos=True), at=0.0) for _ in range(4)]
    sim.run_until_idle()
    assert sim.preemptions > 0
    assert sum(r.preemptions for r in reqs) == sim.preemptions
    assert all(r.generated == 300 and r.finish_reason == "length" for r in reqs)
    assert sim.free_blocks == sim.total_blocks  # nothing leaked
    assert max(sum(r.blocks for r, _ in s.batch) for s in steps.steps) <= sim.total_blocks


def test_abort_frees_the_request_at_once_or_at_the_step_boundary():
    sim = Simulator(make_profile())
    running = sim.submit(RequestSpec(50, 1000, ignore_eos=True), at=0.0)
    sim.advance_to(0.05)
    queued = sim.submit(RequestSpec(50, 10, ignore_eos=True), at=0.05)  # not admitted yet (same instant)
    sim.abort(running, at=0.05)
    sim.abort(queued, at=0.05)
    sim.run_until_idle()
    assert running.finish_reason == queued.finish_reason == "abort"
    assert 0 < running.generated < 1000
    assert queued.generated == 0 and math.isnan(queued.admitted)
    assert sim.free_blocks == sim.total_blocks and not sim.running and sim.active == 0


def test_output_length_eos_draws_are_seeded_and_bounded():
    def lengths(seed: int) -> list[tuple[int, str]]:
        sim = Simulator(load_profile(), seed=seed)
        reqs = [sim.submit(RequestSpec(10, 300, min_tokens=5), at=0.0) for _ in range(200)]
        sim.run_until_idle()
        return [(r.generated, r.finish_reason) for r in reqs]

    a, b, c = lengths(1), lengths(1), lengths(2)
    assert a == b and a != c
    assert all(5 <= n <= 300 for n, _ in a)
    assert {reason for n, reason in a if n < 300} == {"stop"}
    assert {reason for n, reason in a if n == 300} <= {"length"}
    assert len({n for n, _ in a}) > 20  # a distribution, not a constant


def test_same_seed_same_timeline():
    def timeline(seed: int) -> list[float]:
        sim = Simulator(load_profile(), seed=seed)
        reqs = [sim.submit(RequestSpec(30 + i, 64), at=0.01 * i) for i in range(50)]
        sim.run_until_idle()
        return [r.finished for r in reqs] + [sim.read_gpu().energy_j]

    assert timeline(7) == timeline(7)


def test_energy_counter_is_the_exact_integral_of_the_power_trace():
    sim = Simulator(load_profile(), trace_power=True)
    for i in range(40):
        sim.submit(RequestSpec(100 + 10 * i, 50 + i), at=0.003 * i)
    end = sim.run_until_idle()
    sim.advance_to(end + 1.0)  # and an idle second
    reading = sim.read_gpu()
    assert sim.power_trace is not None and len(sim.power_trace) > 100
    assert reading.energy_j == pytest.approx(integrate_trace(sim.power_trace, reading.t), rel=1e-12)
    # the last second was idle: exactly idle power times one second on top of the energy at `end`
    at_end = integrate_trace(sim.power_trace, end)
    assert reading.energy_j - at_end == pytest.approx(sim.profile.power.idle_w * 1.0, rel=1e-9)


def test_step_power_grows_with_work_and_is_capped_at_the_power_limit():
    profile = make_profile(
        power={"idle_w": 100.0, "busy_w": 300.0, "per_decode_token_j": 0.0, "per_prefill_token_j": 0.01}
    )
    steps = Steps()
    sim = Simulator(profile, listener=steps)
    sim.submit(RequestSpec(10, 1, ignore_eos=True), at=0.0)
    sim.submit(RequestSpec(4000, 1, ignore_eos=True), at=1.0)
    sim.run_until_idle()
    small, big = steps.steps
    assert small.power_w == pytest.approx(300.0 + 10 * 0.01 / (0.001 + 10 * 0.00001))
    limit = profile.gpu.power_limit_w
    energy = 300.0 * (0.001 + 4000 * 0.00001) + 4000 * 0.01
    assert big.power_w == limit
    assert big.end - big.start == pytest.approx(energy / limit)  # stretched: clocks throttle


def test_gpu_idles_between_requests_and_reports_nvml_like_state():
    sim = Simulator(load_profile())
    first = sim.read_gpu()
    assert first.power_w == sim.profile.power.idle_w and first.utilization_gpu == 0.0
    sim.submit(RequestSpec(200, 200, ignore_eos=True), at=0.0)
    sim.advance_to(0.3)
    busy = sim.read_gpu()
    assert busy.power_w > first.power_w and busy.utilization_gpu > 0.5
    assert busy.temperature_c > first.temperature_c
    sim.run_until_idle()
    sim.advance_to(sim.now + 5.0)
    idle = sim.read_gpu()
    assert idle.power_w == sim.profile.power.idle_w and idle.utilization_gpu < 0.01


def test_arrivals_in_the_past_are_refused():
    sim = Simulator(load_profile())
    sim.advance_to(1.0)
    with pytest.raises(ValueError):
        sim.submit(RequestSpec(10, 10), at=0.5)
