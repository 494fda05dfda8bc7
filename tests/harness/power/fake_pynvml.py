"""A stand-in for the `pynvml` module, for machines without NVIDIA GPUs.

It implements the functions NvmlBackend calls, with the real module's constants, error type and ctypes
structures (imported from the installed nvidia-ml-py), so NvmlBackend runs unchanged against it. The
simulated GPUs behave like the measured H100/H200: power is piecewise constant (set `power_w`), the
energy counter is its exact integral since "driver load", and every reading only changes every
`update_s` (0.1 s), like the driver's.

Knobs for tests: `energy_delay_s` (a slow counter call), `fail` (function names that raise
GPU_IS_LOST), `counter` / `instant_field` (capabilities), `since_load_j` (what the counter held when
the test started: a real one counts from driver load, MJ by now), `reload_driver()` (the counter
restarts at 0).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pynvml as _real

NVMLError = _real.NVMLError
NVML_SUCCESS = _real.NVML_SUCCESS
NVML_ERROR_NOT_SUPPORTED = _real.NVML_ERROR_NOT_SUPPORTED
NVML_ERROR_FUNCTION_NOT_FOUND = _real.NVML_ERROR_FUNCTION_NOT_FOUND
NVML_ERROR_GPU_IS_LOST = _real.NVML_ERROR_GPU_IS_LOST
NVML_ERROR_LIBRARY_NOT_FOUND = _real.NVML_ERROR_LIBRARY_NOT_FOUND
NVML_ERROR_INVALID_ARGUMENT = _real.NVML_ERROR_INVALID_ARGUMENT
NVML_FI_DEV_POWER_INSTANT = _real.NVML_FI_DEV_POWER_INSTANT
NVML_FI_DEV_POWER_AVERAGE = _real.NVML_FI_DEV_POWER_AVERAGE
NVML_TEMPERATURE_GPU = _real.NVML_TEMPERATURE_GPU
NVML_CLOCK_SM = _real.NVML_CLOCK_SM
NVML_CLOCK_MEM = _real.NVML_CLOCK_MEM
NVML_VALUE_TYPE_DOUBLE = _real.NVML_VALUE_TYPE_DOUBLE
NVML_VALUE_TYPE_UNSIGNED_INT = _real.NVML_VALUE_TYPE_UNSIGNED_INT
NVML_VALUE_TYPE_UNSIGNED_LONG = _real.NVML_VALUE_TYPE_UNSIGNED_LONG
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = _real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
NVML_VALUE_TYPE_SIGNED_LONG_LONG = _real.NVML_VALUE_TYPE_SIGNED_LONG_LONG
NVML_VALUE_TYPE_SIGNED_INT = _real.NVML_VALUE_TYPE_SIGNED_INT
NVML_VALUE_TYPE_UNSIGNED_SHORT = _real.NVML_VALUE_TYPE_UNSIGNED_SHORT


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_w: float = 120.0  # set it to change the load; the counter integrates it exactly
    counter: bool = True  # nvmlDeviceGetTotalEnergyConsumption supported (Volta and newer)
    instant_field: bool = True  # NVML_FI_DEV_POWER_INSTANT supported (newer drivers)
    energy_delay_s: float = 0.0
    fail: set[str] = field(default_factory=set)
    throttle: int = 0
    since_load_j: float = 0.0
    # (time, watts) from "driver load" on; the counter integrates this history.
    history: list[tuple[float, float]] = field(default_factory=list)


class FakeNvml:
    """Use as the `nvml` module: `NvmlBackend(nvml=FakeNvml([FakeGpu("GPU-0")]))`."""

    NVMLError = NVMLError

    def __init__(
        self, gpus: list[FakeGpu], library: bool = True, driver: str = "580.95.05", update_s: float = 0.1
    ) -> None:
        self.gpus = gpus
        self.library = library
        self.driver = driver
        self.update_s = update_s
        self.initialized = 0
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        for gpu in gpus:
            gpu.history = [(0.0, gpu.power_w)]
        # The module's constants, so `nv.NVML_...` works on an instance as on the module.
        for name, value in globals().items():
            if name.startswith("NVML_"):
                setattr(self, name, value)

    # -- the simulated hardware --------------------------------------------------------------------

    def _now(self) -> float:
        # Readings change only at the driver's update ticks.
        t = time.monotonic() - self._t0
        return t - t % self.update_s

    def set_power(self, index: int, watts: float) -> None:
        gpu = self.gpus[index]
        with self._lock:
            gpu.history.append((time.monotonic() - self._t0, watts))
            gpu.power_w = watts

    def reload_driver(self, index: int) -> None:
        """The energy counter restarts from zero (a driver reload)."""
        gpu = self.gpus[index]
        with self._lock:
            gpu.history = [(time.monotonic() - self._t0, gpu.power_w)]
            gpu.since_load_j = 0.0

    def energy_j(self, index: int, t: float | None = None) -> float:
        """The exact integral of power from the counter's origin to t (default: the last update tick)."""
        t = self._now() if t is None else t
        with self._lock:
            history = list(self.gpus[index].history)
            total = self.gpus[index].since_load_j
        for (t_a, w), (t_b, _) in zip(history, [*history[1:], (float("inf"), 0.0)], strict=True):
            if t_a >= t:
                break
            total += w * (min(t_b, t) - t_a)
        return total

    def _power_at(self, index: int, t: float) -> float:
        with self._lock:
            history = self.gpus[index].history
            return next((w for t_a, w in reversed(history) if t_a <= t), history[0][1])

    def _gpu(self, handle: int, fn: str) -> FakeGpu:
        if not self.initialized:
            raise NVMLError(_real.NVML_ERROR_UNINITIALIZED)
        self.calls[fn] = self.calls.get(fn, 0) + 1
        gpu = self.gpus[handle]
        if fn in gpu.fail:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        return gpu

    # -- the pynvml API ----------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        if not self.library:
            raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption")
        if not gpu.counter:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if gpu.energy_delay_s:
            time.sleep(gpu.energy_delay_s)
        return round(self.energy_j(handle) * 1000)  # mJ

    def nvmlDeviceGetFieldValues(self, handle: int, field_ids: list[int]) -> object:
        gpu = self._gpu(handle, "nvmlDeviceGetFieldValues")
        values = (_real.c_nvmlFieldValue_t * len(field_ids))()
        t = self._now()
        for value, field_id in zip(values, field_ids, strict=True):
            value.fieldId = field_id
            value.valueType = NVML_VALUE_TYPE_UNSIGNED_INT
            if field_id == NVML_FI_DEV_POWER_INSTANT and gpu.instant_field:
                value.value.uiVal = round(self._power_at(handle, t) * 1000)
            elif field_id == NVML_FI_DEV_POWER_AVERAGE:
                value.value.uiVal = round(self._average_w(handle, t) * 1000)
            else:
                value.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
        return values

    def _average_w(self, index: int, t: float) -> float:
        if t <= 0:
            return self._power_at(index, 0.0)
        start = max(0.0, t - 1.0)
        return (self.energy_j(index, t) - self.energy_j(index, start)) / (t - start)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self._gpu(handle, "nvmlDeviceGetPowerUsage")
        return round(self._average_w(handle, self._now()) * 1000)  # a 1 s average, in mW

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit")
        return 700_000

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return 40 + round(self.gpus[handle].power_w / 20)

    def nvmlDeviceGetClockInfo(self, handle: int, clock: int) -> int:
        self._gpu(handle, "nvmlDeviceGetClockInfo")
        return {NVML_CLOCK_SM: 1980, NVML_CLOCK_MEM: 2619}[clock]  # MHz

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> object:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        busy = 0 if gpu.power_w < 150 else 97
        return _real.c_nvmlUtilization_t(gpu=busy, memory=busy // 2)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").throttle
