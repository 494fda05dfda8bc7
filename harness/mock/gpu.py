"""The simulated GPU: piecewise-constant power over simulated time, and what NVML would report.

Power only changes at step boundaries, so the energy counter is an exact sum of power × duration over
the segments (no sampling error). Temperature and utilization follow first-order responses that are
updated exactly per segment too, so reading them never depends on how often they are read.
Throttle reasons are NVML's clock-event bitmask: the software power cap while a step is held at the
power limit (the engine stretches a step that would draw more until it draws exactly the limit);
the mock has no thermal or clock model, so no other reason is ever set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.mock.profile import Gpu, Power


@dataclass(frozen=True)
class GpuReading:
    t: float  # simulated seconds
    energy_j: float
    power_w: float
    busy_s: float  # cumulative simulated seconds with a step running
    temperature_c: float
    utilization_gpu: float
    utilization_memory: float
    power_limit_w: float
    sm_clock_hz: float
    mem_clock_hz: float
    throttle_reasons: int  # NVML clock-event reason bitmask


# nvmlClocksEventReasonSwPowerCap (harness/power/throttle.py decodes the mask).
SW_POWER_CAP = 0x4


class SimGpu:
    def __init__(self, gpu: Gpu, power: Power, t0: float = 0.0, trace: list | None = None) -> None:
        self.spec = gpu
        self.idle_w = power.idle_w
        self.t = t0
        self.energy_j = 0.0
        self.busy_s = 0.0
        self.power_w = power.idle_w
        self.busy = False
        # Start in thermal equilibrium at idle, as a server that has been up a while.
        self.temperature_c = gpu.ambient_c + gpu.thermal_resistance_c_per_w * power.idle_w
        self.utilization = 0.0
        # (t_start, power_w) at every change when tracing: the power function as data, for checks.
        self.trace = trace
        if trace is not None:
            trace.append((t0, self.power_w))

    def advance(self, t: float) -> None:
        """Integrate the current segment up to `t`."""
        dt = t - self.t
        if dt <= 0.0:
            return
        spec = self.spec
        self.energy_j += self.power_w * dt
        steady = spec.ambient_c + spec.thermal_resistance_c_per_w * self.power_w
        self.temperature_c = steady + (self.temperature_c - steady) * math.exp(
            -dt / spec.thermal_time_constant_s
        )
        decay = math.exp(-dt / spec.utilization_window_s)
        if self.busy:
            self.busy_s += dt
            self.utilization = 1.0 - (1.0 - self.utilization) * decay
        else:
            self.utilization *= decay
        self.t = t

    def set_power(self, t: float, power_w: float, busy: bool) -> None:
        """From `t` on, the GPU draws `power_w` (until the next call)."""
        self.advance(t)
        if power_w != self.power_w or busy != self.busy:
            self.power_w = power_w
            self.busy = busy
            if self.trace is not None:
                self.trace.append((t, power_w))

    def idle(self, t: float) -> None:
        self.set_power(t, self.idle_w, busy=False)

    def read(self, t: float) -> GpuReading:
        self.advance(t)
        spec = self.spec
        return GpuReading(
            t=self.t,
            energy_j=self.energy_j,
            power_w=self.power_w,
            busy_s=self.busy_s,
            temperature_c=self.temperature_c,
            utilization_gpu=self.utilization,
            utilization_memory=self.utilization * spec.memory_utilization_when_busy,
            power_limit_w=spec.power_limit_w,
            sm_clock_hz=spec.sm_clock_hz,
            mem_clock_hz=spec.mem_clock_hz,
            throttle_reasons=SW_POWER_CAP if self.power_w >= spec.power_limit_w else 0,
        )


def integrate_trace(trace: list[tuple[float, float]], t_end: float) -> float:
    """Energy from a power trace by summing its segments (independent of `SimGpu`'s counter)."""
    pieces = []
    for (t0, p), (t1, _) in zip(trace, [*trace[1:], (t_end, 0.0)], strict=True):
        if t0 < t_end and t1 > t0:
            pieces.append(p * (min(t1, t_end) - t0))
    return math.fsum(pieces)
