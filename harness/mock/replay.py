"""Replays the calibration experiments against the simulator, on its virtual clock.

The same protocol as the measurement script (`shared/device/calibrate.py`): a decode row is waves of
B simultaneous requests (fixed prompt and output length, ignore_eos), each wave sent when the previous
one completed; a prefill row is single requests with max_tokens=1, one after another. The statistics
are computed the same way too (medians, decode step = (median e2e - median TTFT) / (output - 1)).
Waves are identical in a deterministic simulator, so one wave stands for all of them.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

from harness.mock.engine import RequestSpec, Simulator
from harness.mock.profile import Profile


@dataclass(frozen=True)
class WaveResult:
    batch: int
    duration_s: float  # from sending the wave to its last token
    energy_j: float  # over the wave, idle included
    busy_s: float  # GPU time with a step running
    decode_tokens: int
    prefill_tokens: int
    ttft_s_median: float
    e2e_s_median: float
    decode_step_s: float
    preemptions: int

    @property
    def j_per_request(self) -> float:
        return self.energy_j / self.batch

    @property
    def mean_power_w(self) -> float:
        return self.energy_j / self.duration_s

    def as_dict(self) -> dict:
        return {**asdict(self), "j_per_request": self.j_per_request, "mean_power_w": self.mean_power_w}


@dataclass(frozen=True)
class PrefillResult:
    prompt_tokens: int
    latency_s: float
    busy_s: float
    energy_j: float  # over the request's own latency


class _Counter:
    """Counts the decode and prefill work of the steps (the regressors of the power fit)."""

    def __init__(self) -> None:
        self.decode = 0
        self.prefill = 0

    def step_done(self, step) -> None:
        self.decode += step.n_decode
        self.prefill += step.n_prefill_tokens


def replay_wave(profile: Profile, batch: int, prompt_tokens: int, output_tokens: int) -> WaveResult:
    counter = _Counter()
    sim = Simulator(profile, listener=counter)
    spec = RequestSpec(prompt_tokens=prompt_tokens, max_tokens=output_tokens, ignore_eos=True)
    requests = [sim.submit(spec, at=0.0) for _ in range(batch)]
    end = sim.run_until_idle()
    gpu = sim.read_gpu()
    ttft = statistics.median(r.first_token - r.arrival for r in requests)
    e2e = statistics.median(r.finished - r.arrival for r in requests)
    return WaveResult(
        batch=batch,
        duration_s=end,
        energy_j=gpu.energy_j,
        busy_s=gpu.busy_s,
        decode_tokens=counter.decode,
        prefill_tokens=counter.prefill,
        ttft_s_median=ttft,
        e2e_s_median=e2e,
        decode_step_s=(e2e - ttft) / max(output_tokens - 1, 1),
        preemptions=sim.preemptions,
    )


def replay_prefill(profile: Profile, prompt_tokens: int) -> PrefillResult:
    sim = Simulator(profile)
    req = sim.submit(RequestSpec(prompt_tokens=prompt_tokens, max_tokens=1, ignore_eos=True), at=0.0)
    sim.run_until_idle()
    gpu = sim.read_gpu()
    return PrefillResult(prompt_tokens, req.finished - req.arrival, gpu.busy_s, gpu.energy_j)
