"""The sampler's cadence, lag, counter resets, integration and error isolation, on fake NVML GPUs.

Timing bounds are loose on purpose (2 shared cores); precise numbers belong to benchmarks/.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fake_pynvml import FakeGpu, FakeNvml

from harness.power.nvml import NvmlBackend
from harness.power.samplelog import (
    ENERGY_ROW,
    FLAG_FAILED,
    FLAG_INTEGRATED,
    FLAG_RESET,
    POWER_ROW,
    SampleRing,
)
from harness.power.sampler import Sampler, SamplerConfig


def run(fake: FakeNvml, seconds: float, config: SamplerConfig, during=None) -> tuple[Sampler, SampleRing]:
    ring = SampleRing(1 << 16)
    sampler = Sampler(NvmlBackend(nvml=fake), ring, config)
    sampler.start()
    try:
        if during:
            during(sampler)
        time.sleep(seconds)
    finally:
        sampler.stop()
    return sampler, ring


def rows_of(ring: SampleRing, gpu: int, kind: int):
    rows, *_ = ring.since(0)
    mine = (rows.gpu == gpu) & (rows.kind == kind)
    return rows.t_ns[mine], rows.power_w[mine], rows.energy_j[mine], rows.flags[mine]


def test_fixed_cadence_on_absolute_deadlines():
    interval = 0.02
    sampler, ring = run(FakeNvml([FakeGpu("GPU-0")]), 2.0, SamplerConfig(interval_s=interval))
    power = sampler.loops()["power"]
    t, *_ = rows_of(ring, 0, POWER_ROW)
    assert power.samples == len(t)
    assert 2.0 / interval * 0.6 <= power.samples <= 2.0 / interval + 2
    # Deadlines are start + k * interval: the span of the samples is (taken + skipped - 1) intervals,
    # with no drift from the time each tick takes (a relative-sleep loop would fall behind).
    span_s = (t[-1] - t[0]) / 1e9
    assert span_s == pytest.approx((power.samples + power.missed - 1) * interval, abs=0.06)
    assert np.median(np.diff(t)) / 1e9 == pytest.approx(interval, abs=0.005)
    # Lag is recorded for every sample and is well under one interval on average.
    assert sum(power.lag_buckets) <= power.samples
    assert power.lag_sum_s / power.samples < interval
    counter = sampler.loops()["counter"]
    assert counter.period_s == 0.5 and 3 <= counter.samples <= 6


def test_a_slow_counter_call_does_not_skew_the_power_cadence():
    # Each counter read takes 0.25 s (real ones: ~3 ms, p99 ~15 ms) against a 0.1 s counter period.
    fake = FakeNvml([FakeGpu("GPU-0", energy_delay_s=0.25)])
    interval = 0.02
    sampler, ring = run(fake, 2.0, SamplerConfig(interval_s=interval, counter_interval_s=0.1))
    loops = sampler.loops()
    assert loops["counter"].missed >= 5  # the counter loop falls behind and says so ...
    assert loops["counter"].samples <= 10
    power = loops["power"]  # ... while the power loop keeps its cadence
    assert 2.0 / interval * 0.6 <= power.samples
    assert power.missed <= 0.2 * power.samples
    t, *_ = rows_of(ring, 0, POWER_ROW)
    assert np.median(np.diff(t)) / 1e9 == pytest.approx(interval, abs=0.005)


def test_skipped_deadlines_are_counted_not_burst():
    fake = FakeNvml([FakeGpu("GPU-0", energy_delay_s=0.35)])
    sampler, ring = run(fake, 1.6, SamplerConfig(interval_s=0.05, counter_interval_s=0.1))
    counter = sampler.loops()["counter"]
    t, *_ = rows_of(ring, 0, ENERGY_ROW)
    # Every reading took 0.35 s, i.e. 3.5 periods: after each, the deadlines already past are skipped.
    assert counter.samples == len(t)
    assert counter.missed >= 2 * (counter.samples - 1)
    assert np.min(np.diff(t)) / 1e9 > 0.3  # no catch-up burst of back-to-back readings
    assert sum(counter.lag_buckets[:6]) < counter.samples  # some samples were late by > 5 ms


def test_counter_reset_is_stitched():
    fake = FakeNvml([FakeGpu("GPU-0", power_w=300.0)])

    def reload_midway(sampler: Sampler) -> None:
        time.sleep(1.2)
        fake.reload_driver(0)

    sampler, ring = run(
        fake, 1.2, SamplerConfig(interval_s=0.05, counter_interval_s=0.1), during=reload_midway
    )
    t, _, energy, flags = rows_of(ring, 0, ENERGY_ROW)
    assert np.all(np.diff(energy) >= 0)  # the exported total never goes down
    assert np.count_nonzero(flags & FLAG_RESET) == 1
    status = sampler.gpus()[0]
    assert status.resets == 1
    # Total = what was counted before the reload + what was counted after; only the energy between
    # the last reading before the reload and the reload itself (< one period + one update) is lost.
    elapsed = (t[-1] - t[0]) / 1e9
    assert energy[-1] - energy[0] == pytest.approx(300.0 * elapsed, abs=300.0 * 0.35)


def test_gpu_without_counter_integrates_instant_power():
    fake = FakeNvml([FakeGpu("GPU-0", power_w=200.0, counter=False)])
    sampler, ring = run(fake, 2.0, SamplerConfig(interval_s=0.02))  # >= 3 counter periods under load
    t, _, energy, flags = rows_of(ring, 0, ENERGY_ROW)
    assert np.all(flags & FLAG_INTEGRATED)
    status = sampler.gpus()[0]
    assert status.method == "integrated"
    pt, *_ = rows_of(ring, 0, POWER_ROW)
    # Each energy row: trapezoids of a constant 200 W from the first power sample to the row's time.
    assert energy == pytest.approx(200.0 * (t - pt[0]) / 1e9, rel=1e-6)
    assert status.energy_j == energy[-1] and len(t) >= 3
    assert fake.calls.get("nvmlDeviceGetTotalEnergyConsumption", 0) == 1  # only the capability probe


def test_errors_on_one_gpu_do_not_stop_the_others():
    fake = FakeNvml([FakeGpu("GPU-0"), FakeGpu("GPU-1")])
    fake.gpus[0].fail = {"nvmlDeviceGetFieldValues", "nvmlDeviceGetTotalEnergyConsumption"}

    def recover(sampler: Sampler) -> None:
        time.sleep(0.8)
        fake.gpus[0].fail = set()

    sampler, ring = run(fake, 0.8, SamplerConfig(interval_s=0.05), during=recover)
    bad, good = sampler.gpus()
    assert bad.errors["power"]["failed"] >= 5 and bad.errors["counter"]["failed"] >= 1
    assert all(n == 0 for kinds in good.errors.values() for n in kinds.values())
    t0, _, _, f0 = rows_of(ring, 0, POWER_ROW)
    t1, _, _, f1 = rows_of(ring, 1, POWER_ROW)
    # Each failed read left a value-less row, so that the harness learns of it; GPU 1 has none.
    failed = f0 & FLAG_FAILED != 0
    assert np.count_nonzero(failed) == bad.errors["power"]["failed"] and not np.any(f1 & FLAG_FAILED)
    _, _, _, e0 = rows_of(ring, 0, ENERGY_ROW)
    assert np.count_nonzero(e0 & FLAG_FAILED) == bad.errors["counter"]["failed"]
    assert len(t1) >= 20
    assert 5 <= len(t0[~failed]) < len(t1)  # GPU 0 resumed once its reads worked again
