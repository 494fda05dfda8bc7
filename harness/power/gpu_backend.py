"""What the sampler needs from a power source, whatever it is (NVML on a GPU host, the mock's simulated GPU).

Readings are split by cost, because their costs differ by three orders of magnitude on real GPUs: the
power fields cost microseconds and are read at the sampling rate; the energy counter costs ~3 ms
(p99 ~15 ms) and anchors the series at a lower rate; the slow-changing state (clocks, temperature,
throttle reasons, utilization, power limit) is read about once a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from foundation.errors import InputError


class BackendError(Exception):
    """One reading of one GPU failed; the sampler counts it and carries on with the other GPUs."""


class Unsupported(BackendError):
    """This GPU does not provide this reading at all (e.g. no energy counter before Volta)."""


@dataclass(frozen=True)
class GpuIdentity:
    index: int
    uuid: str
    name: str
    driver: str
    has_counter: bool  # hardware energy counter; without it the sampler integrates instant power
    instant_power: str  # "field" (NVML_FI_DEV_POWER_INSTANT), "power_usage" (fallback), "simulated"


@dataclass(frozen=True)
class PowerReading:
    instant_w: float
    average_w: float | None = None  # NVML's 1 s average (field 185), where available
    t_ns: int | None = None  # when the source itself says the value was taken (our monotonic clock)


@dataclass(frozen=True)
class EnergyReading:
    energy_j: float  # the raw cumulative counter, in joules (resets are the sampler's business)
    t_ns: int | None = None


@dataclass(frozen=True)
class GpuState:
    power_limit_w: float | None = None
    temperature_c: float | None = None
    sm_clock_hz: float | None = None
    mem_clock_hz: float | None = None
    utilization_gpu: float | None = None  # 0..1
    utilization_memory: float | None = None  # 0..1
    throttle_reasons: int | None = None  # NVML clock-event reason bitmask


class PowerBackend(Protocol):
    """A source of GPU readings. Methods may be called from several threads at once."""

    name: str

    def devices(self) -> list[GpuIdentity]: ...

    def read_power(self, index: int) -> PowerReading: ...

    def read_energy(self, index: int) -> EnergyReading: ...

    def read_state(self, index: int) -> GpuState: ...

    def close(self) -> None: ...


def parse_gpus(text: str) -> list[int] | None:
    """`--gpus` value: "all" → None (every GPU), "0,2" → [0, 2]."""
    text = text.strip()
    if text.lower() == "all":
        return None
    indices: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise InputError(f"--gpus: expected 'all' or GPU indices like '0,2', got {text!r}")
        if int(part) in indices:
            raise InputError(f"--gpus: GPU {part} is listed twice")
        indices.append(int(part))
    return indices


def check_indices(requested: list[int] | None, available: list[int], what: str) -> list[int]:
    """Validate requested GPU indices against what the backend has; None means all of them."""
    if requested is None:
        return list(available)
    missing = [i for i in requested if i not in available]
    if missing:
        have = ", ".join(map(str, available)) or "none"
        raise InputError(f"--gpus: no GPU {missing[0]} on {what} (it has: {have})")
    return list(requested)
