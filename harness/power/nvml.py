"""The NVML backend: real GPUs through `pynvml` (the `nvidia-ml-py` distribution).

Which call for which reading follows what was measured on H100/H200 (driver 580):
- energy: `nvmlDeviceGetTotalEnergyConsumption` (mJ since driver load, Volta and newer) — exact, but
  ~3 ms a call (p99 ~15 ms), so the sampler reads it at a low rate as the anchor;
- power: fields 186 (`NVML_FI_DEV_POWER_INSTANT`) and 185 (`NVML_FI_DEV_POWER_AVERAGE`, a lagging 1 s
  average) in one `nvmlDeviceGetFieldValues` call of a few µs; `nvmlDeviceGetPowerUsage` (= the 1 s
  average on Ampere and newer) only where the instant field does not exist;
- state: clocks, temperature, clock-event reasons, utilization, enforced power limit.

The pynvml module is injected (`nvml=`), so tests run this exact code against a fake module that
implements the same names, constants and error type.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from foundation.errors import InputError
from harness.power.gpu_backend import (
    BackendError,
    EnergyReading,
    GpuIdentity,
    GpuState,
    PowerReading,
    Unsupported,
    check_indices,
)

# NVML value types (nvmlValueType_t) → the member of the value union that holds them.
_VALUE_MEMBERS = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}


def _text(value: Any) -> str:
    # Old pynvml releases returned bytes.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class NvmlBackend:
    name = "nvml"

    def __init__(self, gpus: list[int] | None = None, nvml: ModuleType | None = None) -> None:
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError:
                raise InputError(
                    "--backend nvml: the pynvml module (nvidia-ml-py) is not installed"
                ) from None
        self._nv = nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise InputError(
                f"--backend nvml: NVML is not available on this machine ({exc}); "
                "without a GPU use --backend simulated --simulate-from URL"
            ) from None
        self._lock = threading.Lock()
        self._closed = False
        # GPU index -> GpuState items its NVML reported as not supported (never asked again).
        self._state_unsupported: dict[int, set[str]] = {}
        try:
            indices = check_indices(gpus, list(range(nvml.nvmlDeviceGetCount())), "this machine")
            driver = self._try(lambda: _text(nvml.nvmlSystemGetDriverVersion()), "")
            self._handles = {i: nvml.nvmlDeviceGetHandleByIndex(i) for i in indices}
            self._value_members = {
                getattr(nvml, const): member
                for const, member in _VALUE_MEMBERS.items()
                if hasattr(nvml, const)
            }
            self._fields = [nvml.NVML_FI_DEV_POWER_INSTANT, nvml.NVML_FI_DEV_POWER_AVERAGE]
            self._devices = {i: self._identify(i, driver) for i in indices}
        except BaseException:
            nvml.nvmlShutdown()
            raise

    # -- identity and capability probing (once, at start) ------------------------------------------

    def _try(self, read: Any, default: Any) -> Any:
        try:
            return read()
        except self._nv.NVMLError:
            return default

    def _unsupported(self, exc: Exception) -> bool:
        codes = (
            getattr(self._nv, "NVML_ERROR_NOT_SUPPORTED", -1),
            getattr(self._nv, "NVML_ERROR_FUNCTION_NOT_FOUND", -1),
        )
        return getattr(exc, "value", None) in codes

    def _identify(self, index: int, driver: str) -> GpuIdentity:
        nv, handle = self._nv, self._handles[index]
        # A GPU that fails here is still sampled (its reads fail and are counted) rather than
        # stopping the sidecar: errors on one GPU must not cost the others their data.
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            has_counter = True
        except nv.NVMLError as exc:
            has_counter = not self._unsupported(exc)
        try:
            instant = self._field_values(handle)[0]
            instant_power = "field" if instant is not None else "power_usage"
        except nv.NVMLError as exc:
            instant_power = "power_usage" if self._unsupported(exc) else "field"
        return GpuIdentity(
            index=index,
            uuid=self._try(lambda: _text(nv.nvmlDeviceGetUUID(handle)), ""),
            name=self._try(lambda: _text(nv.nvmlDeviceGetName(handle)), ""),
            driver=driver,
            has_counter=has_counter,
            instant_power=instant_power,
        )

    def devices(self) -> list[GpuIdentity]:
        return list(self._devices.values())

    # -- readings ----------------------------------------------------------------------------------

    def _field_values(self, handle: Any) -> tuple[float | None, float | None]:
        """(instant W, 1 s average W); None for a field this GPU does not report."""
        out: list[float | None] = []
        for value in self._nv.nvmlDeviceGetFieldValues(handle, self._fields):
            member = self._value_members.get(value.valueType)
            if value.nvmlReturn != self._nv.NVML_SUCCESS or member is None:
                out.append(None)
            else:
                out.append(float(getattr(value.value, member)) / 1000.0)  # mW → W
        return out[0], out[1]

    def read_power(self, index: int) -> PowerReading:
        nv, handle = self._nv, self._handles[index]
        try:
            if self._devices[index].instant_power == "field":
                instant, average = self._field_values(handle)
                if instant is None:
                    raise BackendError(f"GPU {index}: the instant power field returned an error")
                return PowerReading(instant_w=instant, average_w=average)
            return PowerReading(instant_w=nv.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        except nv.NVMLError as exc:
            raise BackendError(f"GPU {index}: power: {exc}") from None

    def read_energy(self, index: int) -> EnergyReading:
        nv = self._nv
        if not self._devices[index].has_counter:
            raise Unsupported(f"GPU {index}: no energy counter")
        try:
            return EnergyReading(
                energy_j=nv.nvmlDeviceGetTotalEnergyConsumption(self._handles[index]) / 1000.0
            )
        except nv.NVMLError as exc:
            raise BackendError(f"GPU {index}: energy counter: {exc}") from None

    def _state_readers(self, handle: Any) -> dict[str, Any]:
        """GpuState field -> a call returning it in base units (W, °C, Hz, 0..1, bitmask)."""
        nv: Any = self._nv
        # nvidia-ml-py renamed "throttle reasons" to "clock event reasons"; old releases have only the former.
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        reasons = reasons or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return {
            "power_limit_w": lambda: nv.nvmlDeviceGetEnforcedPowerLimit(handle) * 1e-3,
            "temperature_c": lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU),
            "sm_clock_hz": lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM) * 1e6,
            "mem_clock_hz": lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM) * 1e6,
            "utilization_gpu": lambda: nv.nvmlDeviceGetUtilizationRates(handle).gpu * 0.01,
            "utilization_memory": lambda: nv.nvmlDeviceGetUtilizationRates(handle).memory * 0.01,
            "throttle_reasons": lambda: int(reasons(handle)),
        }

    def read_state(self, index: int) -> GpuState:
        """Every item separately: one unsupported or failing item leaves the others readable. An item
        this GPU does not support (NVML says so on its first read) is not asked for again, so a GPU
        without, say, clock-event reasons costs no failing call a second."""
        nv = self._nv
        unsupported = self._state_unsupported.setdefault(index, set())
        failures: list[str] = []
        values: dict[str, Any] = {}
        for item, read in self._state_readers(self._handles[index]).items():
            if item in unsupported:
                continue
            try:
                value = read()
            except nv.NVMLError as exc:
                if self._unsupported(exc):
                    unsupported.add(item)
                else:
                    failures.append(str(exc))
                continue
            values[item] = int(value) if item == "throttle_reasons" else float(value)
        if failures and not values:
            raise BackendError(f"GPU {index}: state: {failures[0]}")
        return GpuState(**values)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._try(self._nv.nvmlShutdown, None)
