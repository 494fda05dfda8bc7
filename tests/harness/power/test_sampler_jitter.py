"""The sampler's phase jitter: one sample per period at a random point of it, so that a fixed schedule
is seen at every phase, not at the few a fixed grid would lock onto; reproducible with a seed."""

from __future__ import annotations

import time

import numpy as np
from fake_pynvml import FakeGpu, FakeNvml

from harness.power.nvml import NvmlBackend
from harness.power.samplelog import POWER_ROW, SampleRing
from harness.power.sampler import Sampler, SamplerConfig, phase_offsets

PERIOD_NS = 100_000_000  # 10 Hz
SCHEDULE_NS = 500_000_000  # requests every 500 ms: five sample periods


def _phases(config: SamplerConfig, n: int = 2000) -> np.ndarray:
    """Where in the schedule's period each of n deadlines falls (ns)."""
    offset = phase_offsets(config, "power", PERIOD_NS)
    deadlines = np.array([k * PERIOD_NS + offset() for k in range(n)])
    return deadlines % SCHEDULE_NS


def test_jitter_spreads_the_samples_over_every_phase_of_a_fixed_schedule() -> None:
    locked = _phases(SamplerConfig(phase_jitter=False))
    assert len(np.unique(locked)) == 5  # a fixed grid sees five phases of the schedule, all run long
    jittered = _phases(SamplerConfig(jitter_seed=3))
    counts, _ = np.histogram(jittered, bins=50, range=(0, SCHEDULE_NS))
    assert counts.min() > 0.5 * counts.mean()  # every 10 ms of the schedule's period is sampled
    # Still one deadline per period: offsets within [0, period).
    offsets = np.array([phase_offsets(SamplerConfig(jitter_seed=3), "power", PERIOD_NS)() for _ in range(3)])
    assert ((offsets >= 0) & (offsets < PERIOD_NS)).all()


def test_the_same_seed_gives_the_same_offsets() -> None:
    def draws(seed: int | None, loop: str = "power") -> list[int]:
        offset = phase_offsets(SamplerConfig(jitter_seed=seed), loop, PERIOD_NS)
        return [offset() for _ in range(20)]

    assert draws(7) == draws(7) != draws(8)
    assert draws(7, "counter") == draws(7, "state") == [0] * 20  # exact wherever read; no shape to give


def test_the_running_sampler_takes_one_jittered_sample_per_period() -> None:
    interval = 0.02
    ring = SampleRing(1 << 14)
    sampler = Sampler(
        NvmlBackend(nvml=FakeNvml([FakeGpu("GPU-0")])), ring, SamplerConfig(interval, jitter_seed=1)
    )
    sampler.start()
    try:
        time.sleep(1.5)
    finally:
        sampler.stop()
    rows, *_ = ring.since(0)
    t = rows.t_ns[(rows.gpu == 0) & (rows.kind == POWER_ROW)]
    gaps = np.diff(t) / 1e9
    # Gaps between samples at a random point of each period spread over (0, 2 periods), mean one period:
    # a fixed grid's stay within a millisecond or two of it.
    assert np.std(gaps) > 0.25 * interval
    assert abs(np.mean(gaps) - interval) < 0.3 * interval
    assert gaps.min() > 0  # never two samples at once
