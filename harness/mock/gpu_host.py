"""The simulated host's GPUs: some serve the model (tensor parallel), the rest idle; one may fail.

The simulator runs one engine whose power (`SimGpu`) is that of the whole serving group as the profile
was fitted: idle between steps, busy power during them. Across `tensor_parallel` GPUs every GPU draws
its own idle power and takes a share of the work above idle, so GPU i's power is
`idle + w_i * (P(t) - idle)` with fixed weights `w_i` summing to 1. Energy and temperature are linear
in power and start from idle, so they follow exactly from the engine's own counter and temperature
(no second integration, and one serving GPU is the engine's GPU unchanged). GPUs beyond the serving
ones stay at idle power: on a real host they draw power too, and none of it is the model's.

A fault makes every read of one GPU fail from a simulated time on, as a GPU that fell off the bus
does to NVML: its entry then carries `error` and no readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from foundation.errors import InputError
from harness.mock.gpu import GpuReading
from harness.mock.profile import Profile

# Rank 0 of a tensor-parallel group also samples and detokenizes: a little more work than the others
# (deterministic, so repeated runs draw the same power).
RANK0_EXTRA_WORK = 0.04
# What NVML says of a GPU that is gone (NVML_ERROR_GPU_IS_LOST).
LOST_ERROR = "GPU is lost"


@dataclass(frozen=True)
class GpuFault:
    """Every read of GPU `index` fails from simulated second `from_s` on."""

    index: int
    from_s: float


@dataclass(frozen=True)
class HostLayout:
    gpus: int = 1  # GPUs on the host
    tensor_parallel: int = 1  # the first this many serve the model
    fault: GpuFault | None = None

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise ValueError("gpus must be at least 1")
        if not 1 <= self.tensor_parallel <= self.gpus:
            raise ValueError(f"tensor_parallel must be between 1 and the host's {self.gpus} GPU(s)")
        if self.fault is not None and not 0 <= self.fault.index < self.gpus:
            raise ValueError(f"the failing GPU must be one of the host's GPUs 0-{self.gpus - 1}")

    def weights(self) -> list[float]:
        """Each serving GPU's share of the work above idle (rank 0 a little more), summing to 1."""
        raw = [1.0 + (RANK0_EXTRA_WORK if rank == 0 else 0.0) for rank in range(self.tensor_parallel)]
        total = sum(raw)
        return [w / total for w in raw]


def host_gpus(
    layout: HostLayout, profile: Profile, reading: GpuReading, sim_time_s: float
) -> list[dict[str, Any]]:
    """The `gpus` list of `/sim/gpu` (docs/contracts.md, "Simulated GPU") for one engine reading."""
    weights = layout.weights()
    idle_w = profile.power.idle_w
    idle_temp = profile.gpu.ambient_c + profile.gpu.thermal_resistance_c_per_w * idle_w
    # The engine's counter starts at its simulated time 0, as the readings' time does.
    idle_j = idle_w * reading.t
    out = []
    for index in range(layout.gpus):
        entry: dict[str, Any] = {
            "index": index,
            "uuid": f"GPU-mock-{index:04d}",
            "name": profile.gpu.name,
            "serving": index < layout.tensor_parallel,
        }
        fault = layout.fault
        if fault is not None and fault.index == index and sim_time_s >= fault.from_s:
            entry["error"] = LOST_ERROR
        elif layout.tensor_parallel == 1 and index == 0:
            entry.update(_readings(reading))  # the engine's GPU itself: exact, as before there were more
        elif index < layout.tensor_parallel:
            w = weights[index]
            entry.update(
                _readings(reading),
                energy_j=idle_j + w * (reading.energy_j - idle_j),
                power_w=idle_w + w * (reading.power_w - idle_w),
                temperature_c=idle_temp + w * (reading.temperature_c - idle_temp),
            )
        else:
            entry.update(
                _readings(reading),
                energy_j=idle_j,
                power_w=idle_w,
                temperature_c=idle_temp,
                utilization_gpu=0.0,
                utilization_memory=0.0,
                throttle_reasons=0,
            )
        out.append(entry)
    return out


def _readings(gpu: GpuReading) -> dict[str, Any]:
    return {
        "energy_j": gpu.energy_j,
        "power_w": gpu.power_w,
        "power_limit_w": gpu.power_limit_w,
        "temperature_c": gpu.temperature_c,
        "sm_clock_hz": gpu.sm_clock_hz,
        "mem_clock_hz": gpu.mem_clock_hz,
        "utilization_gpu": gpu.utilization_gpu,
        "utilization_memory": gpu.utilization_memory,
        "throttle_reasons": gpu.throttle_reasons,
        "driver": "mock",
    }


def host_layout(gpus: int, tensor_parallel: int, fail: str | None) -> HostLayout:
    """`--gpus`, `--tensor-parallel` and `--gpu-fail INDEX@SECONDS` as a layout (one-line errors)."""
    fault = None
    if fail is not None:
        index, at, seconds = fail.partition("@")
        try:
            fault = GpuFault(int(index), float(seconds))
        except ValueError:
            fault = None
        if not at or fault is None or not 0 <= fault.from_s < float("inf"):
            raise InputError(f"--gpu-fail: expected INDEX@SECONDS like 1@2.5, got {fail!r}")
    try:
        return HostLayout(gpus, tensor_parallel, fault)
    except ValueError as exc:
        flag = "--gpu-fail" if fault is not None and "failing" in str(exc) else "--tensor-parallel"
        raise InputError(f"{flag}: {exc}") from None
