"""What the sampler refuses to take for a reading, and how it tells a counter reset from a bad read.

A scripted GPU behind the PowerBackend interface (the interface NVML and the simulated GPU implement):
a counter that counts 200 W from 861 kJ, as an H100 since driver load, except on the reads a test
scripts (one 0, NaN, a reload), and power with scripted bad values. The sidecar tests serve it over
real HTTP.
"""

from __future__ import annotations

import math
import re
import threading
import time

import httpx
import numpy as np
import pytest

from harness.power.gpu_backend import (
    BackendError,
    CounterRule,
    EnergyReading,
    GpuIdentity,
    GpuState,
    PowerReading,
)
from harness.power.samplelog import (
    ENERGY_ROW,
    FLAG_GLITCH,
    FLAG_IMPLAUSIBLE,
    FLAG_INVALID,
    FLAG_REJECTED,
    FLAG_RESET,
    POWER_ROW,
    SampleRing,
)
from harness.power.sampler import Sampler, SamplerConfig
from harness.power.sidecar_server import Sidecar
from harness.power.sources import SidecarSource

WATTS = 200.0
CONFIG = SamplerConfig(interval_s=0.05, counter_interval_s=0.1, state_interval_s=0.1)


class ScriptedGpu:
    """One GPU: `energy_at` / `power_at` map a read's number (0, 1, ...) to the value it returns."""

    name = "scripted"

    def __init__(
        self,
        energy_at: dict[int, float] | None = None,
        power_at: dict[int, float] | None = None,
        limit_w: float = 700.0,
        stuck_at_zero_from: int | None = None,
    ) -> None:
        self.energy_at, self.power_at = energy_at or {}, power_at or {}
        self.limit_w, self.stuck_from = limit_w, stuck_at_zero_from
        self.energy_reads = self.power_reads = 0
        self.base_j, self.t0 = 861_000.0, time.monotonic()
        self._lock = threading.Lock()

    def truth(self) -> float:
        """What the counter holds now (a real one: no bad reads)."""
        with self._lock:
            return self.base_j + WATTS * (time.monotonic() - self.t0)

    def reload_driver(self) -> None:
        with self._lock:
            self.base_j, self.t0 = 0.0, time.monotonic()

    def devices(self) -> list[GpuIdentity]:
        return [GpuIdentity(0, "GPU-scripted", "Scripted H100", "580", True, "field")]

    def read_power(self, index: int) -> PowerReading:
        k, self.power_reads = self.power_reads, self.power_reads + 1
        return PowerReading(instant_w=self.power_at.get(k, WATTS), average_w=WATTS)

    def read_energy(self, index: int) -> EnergyReading:
        k, self.energy_reads = self.energy_reads, self.energy_reads + 1
        if self.stuck_from is not None and k >= self.stuck_from:
            return EnergyReading(0.0)
        return EnergyReading(self.energy_at.get(k, self.truth()))

    def read_state(self, index: int) -> GpuState:
        return GpuState(power_limit_w=self.limit_w)

    def close(self) -> None:
        pass


def sample(gpu: ScriptedGpu, seconds: float, during=None) -> tuple[Sampler, SampleRing]:
    ring = SampleRing(1 << 14)
    sampler = Sampler(gpu, ring, CONFIG)
    sampler.start()
    try:
        if during:
            during()
        time.sleep(seconds)
    finally:
        sampler.stop()
    return sampler, ring


def rows(ring: SampleRing, kind: int):
    got, *_ = ring.since(0)
    mine = got.kind == kind
    return got.t_ns[mine], got.power_w[mine], got.energy_j[mine], got.flags[mine]


def test_one_zero_read_mid_run_is_dropped_not_a_reset():
    """The adversarial trial's case: one energy read of 0 was taken for a reset and the run over-counted
    by the whole counter. It is a bad read: dropped, counted, and marked in the sample log."""
    gpu = ScriptedGpu(energy_at={4: 0.0})
    first = gpu.truth()
    sampler, ring = sample(gpu, 1.2)
    last = gpu.truth()
    t, _, energy, flags = rows(ring, ENERGY_ROW)
    valued = flags & FLAG_REJECTED == 0
    assert np.all(np.diff(energy[valued]) >= 0) and not np.any(flags & FLAG_RESET)
    # What was exported is the counter's own count over the time it ran: no 861 kJ carried forward.
    span_s = (t[valued][-1] - t[valued][0]) / 1e9
    assert energy[valued][-1] - energy[valued][0] == pytest.approx(WATTS * span_s, abs=1.0)
    assert energy[valued][-1] <= last and energy[valued][0] >= first
    status = sampler.gpus()[0]
    assert status.resets == 0 and status.errors["counter"]["glitch"] == 1
    (marker,) = np.flatnonzero(~valued)
    assert flags[marker] == FLAG_GLITCH and math.isnan(energy[marker])


def test_a_driver_reload_is_a_reset_once_the_next_read_confirms_it():
    gpu = ScriptedGpu()

    def reload() -> None:
        time.sleep(0.6)
        gpu.reload_driver()

    sampler, ring = sample(gpu, 0.6, during=reload)
    t, _, energy, flags = rows(ring, ENERGY_ROW)
    assert np.all(np.diff(energy) >= 0) and not np.any(flags & FLAG_REJECTED)
    (reset,) = np.flatnonzero(flags & FLAG_RESET)
    assert energy[reset] - energy[reset - 1] < WATTS * 0.2  # the reading after the reload, not 861 kJ
    assert energy[-1] - energy[0] == pytest.approx(WATTS * (t[-1] - t[0]) / 1e9, abs=WATTS * 0.15)
    status = sampler.gpus()[0]
    assert status.resets == 1 and status.errors["counter"]["glitch"] == 0


def test_nan_infinite_negative_and_absurd_values_never_reach_the_ring_or_the_gauges():
    gpu = ScriptedGpu(
        energy_at={3: math.nan, 5: -1.0, 7: math.inf},
        power_at={4: math.nan, 6: -50.0, 8: 2_500.0},  # 2.5 kW: above 3x the 700 W limit
    )
    sampler, ring = sample(gpu, 1.0)
    status = sampler.gpus()[0]
    assert status.errors["counter"] == {"failed": 0, "invalid": 3, "implausible": 0, "glitch": 0}
    assert status.errors["power"] == {"failed": 0, "invalid": 2, "implausible": 1}
    for kind, column in ((POWER_ROW, 1), (ENERGY_ROW, 2)):
        values, flags = rows(ring, kind)[column], rows(ring, kind)[3]
        refused = flags & FLAG_REJECTED != 0
        assert np.all(np.isnan(values[refused])) and np.all(np.isfinite(values[~refused]))
        assert np.all(values[~refused] >= 0)
    _, power, _, pflags = rows(ring, POWER_ROW)
    refused = sorted(pflags[pflags & FLAG_REJECTED != 0].tolist())
    assert refused == [FLAG_INVALID, FLAG_INVALID, FLAG_IMPLAUSIBLE]
    assert np.nanmax(power) == WATTS
    assert status.power_w == WATTS and math.isfinite(status.energy_j or math.nan)


def test_a_counter_stuck_at_zero_is_never_taken_for_a_reset_even_at_stop():
    """Every 0 after the readings stop making sense is dropped, the last one too, pending when the
    sampler stops: the series ends at the last consistent reading."""
    gpu = ScriptedGpu(stuck_at_zero_from=3)
    sampler, ring = sample(gpu, 0.8)
    _, _, energy, flags = rows(ring, ENERGY_ROW)
    status = sampler.gpus()[0]
    zeros = gpu.energy_reads - 3
    assert zeros >= 3 and status.errors["counter"]["glitch"] == zeros
    assert np.count_nonzero(flags & FLAG_GLITCH) == zeros  # the one pending at stop included
    assert status.resets == 0 and np.all(energy[flags == 0] > 861_000)


def test_the_rule_on_its_own():
    rule = CounterRule()
    s = 1_000_000_000
    assert rule.push(0, 100.0, 700.0).kept == [(0, 100.0, None)]
    high = rule.push(s, 1e9, 700.0)  # a gigajoule in a second: held, then dropped
    assert high.kept == [] and high.dropped == []
    back = rule.push(2 * s, 400.0, 700.0)
    assert back.dropped == [(s, "implausible")] and back.kept == [(2 * s, 400.0, None)]
    # A first reading that was itself bad (0), then the real counter: a jump, not 1 MJ of energy.
    start = CounterRule()
    start.push(0, 0.0, 700.0)
    assert start.push(s, 1e6, 700.0).kept == []
    step = start.push(2 * s, 1e6 + 300.0, 700.0)
    assert step.kept == [(s, 0.0, "jump"), (2 * s, 300.0, None)]
    pending = CounterRule()
    pending.push(0, 500.0, 700.0)
    pending.push(s, 2.0, 700.0)
    assert pending.finish().dropped == [(s, "unconfirmed")]


@pytest.fixture
def scripted_sidecar():
    cars: list[Sidecar] = []

    def start(gpu: ScriptedGpu) -> str:
        car = Sidecar(gpu, host="127.0.0.1", port=0, interval_s=0.05)  # the counter every 0.5 s
        car.start()
        cars.append(car)
        host, port = car.address
        return f"http://{host}:{port}"

    yield start
    for car in cars:
        car.stop()


def test_refused_reads_are_in_metrics_and_in_the_series_issues(scripted_sidecar):
    """Over HTTP, as the harness sees them: /metrics counts them per kind, and the series read from
    /samples over the window carries an issue for each kind (the join's `power_issue`)."""
    url = scripted_sidecar(ScriptedGpu(energy_at={2: 0.0, 4: math.nan}, power_at={5: math.nan, 9: -3.0}))
    source = SidecarSource(url)
    start = time.monotonic_ns()
    time.sleep(2.3)
    end = time.monotonic_ns()
    metrics = httpx.get(url + "/metrics").text

    def errors(loop: str, kind: str) -> float:
        (value,) = [
            float(value)
            for labels, value in re.findall(r"^joulebench_gpu_read_errors_total{(.*)} (\S+)$", metrics, re.M)
            if dict(re.findall(r'(\w+)="([^"]*)"', labels)) == {
                "gpu": "0", "uuid": "GPU-scripted", "loop": loop, "kind": kind
            }
        ]  # fmt: skip
        return value

    assert errors("counter", "glitch") == 1 and errors("counter", "invalid") == 1
    assert errors("power", "invalid") == 2 and errors("power", "failed") == 0
    time.sleep(0.6)  # a counter reading after the window
    (series,) = source.read(start, end).series
    assert np.all(np.diff(series.energy_j) >= 0)
    text = "\n".join(series.issues)
    at, two = r"left out, at \+[\d.]+ s", r"left out, at \+[\d.]+ s to \+[\d.]+ s"
    assert re.search(rf"GPU 0: 1 energy counter reading\(s\) {at}: dropped by the sidecar: a lone drop", text)
    assert re.search(rf"GPU 0: 1 energy counter reading\(s\) {at}: refused by the sidecar: not a num", text)
    assert re.search(rf"GPU 0: 2 power reading\(s\) {two}: refused by the sidecar: not a number", text)
    assert "reset" not in text.replace("not a reset", "")
    assert series.energy_j[-1] - series.energy_j[0] < WATTS * 4.0  # no 861 kJ anywhere


def test_a_backend_error_is_still_a_failed_read(scripted_sidecar):
    gpu = ScriptedGpu()

    def fail(index: int) -> EnergyReading:
        raise BackendError("GPU 0: energy counter: GPU is lost")

    gpu.read_energy = fail  # type: ignore[method-assign]
    url = scripted_sidecar(gpu)
    time.sleep(1.1)
    health = httpx.get(url + "/healthz").json()
    assert health["gpus"][0]["errors"]["counter"]["failed"] >= 2
