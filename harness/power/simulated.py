"""The simulated backend: reads the mock server's simulated GPU (`GET {url}/sim/gpu`) as it would read NVML.

The document's `energy_j` plays the hardware energy counter (exact, cumulative) and `power_w` the
instant power field, so the whole chain — sampler, exposition, sample log, Prometheus, readers, join —
runs without a GPU. The contract is in docs/contracts.md ("Simulated GPU"). Values are passed on as the
document has them (NaN included): what is no reading is the sampler's to refuse, as it is for NVML.
A GPU entry with `error` is a failed read of that GPU (BackendError), as a failing NVML call is.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import httpx

from foundation.errors import InputError
from harness.clock import boot_id
from harness.power.gpu_backend import (
    BackendError,
    EnergyReading,
    GpuIdentity,
    GpuState,
    PowerReading,
    check_indices,
)
from harness.power.http_problem import http_problem, is_not_found

SIM_SCHEMA_VERSION = 1
# NVML's clock-event reason bit for the software power cap (nvmlClocksEventReasonSwPowerCap).
SW_POWER_CAP = 0x4


class SimulatedBackend:
    name = "simulated"

    def __init__(self, base_url: str, gpus: list[int] | None = None, timeout_s: float = 2.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"--simulate-from: expected an http(s) URL, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/sim/gpu"
        self._timeout = timeout_s
        # One client per sampler thread: the power and counter loops read concurrently.
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        self._boot_id = boot_id()
        try:
            doc = self._fetch()
        except BackendError as exc:
            raise InputError(f"--simulate-from: {exc}") from None
        indices = check_indices(gpus, [g["index"] for g in doc["gpus"]], self.url)
        self._devices = {
            g["index"]: GpuIdentity(
                index=g["index"],
                uuid=str(g.get("uuid", "")),
                name=str(g.get("name", "")),
                driver=str(g.get("driver", "")),
                has_counter=True,
                instant_power="simulated",
            )
            for g in doc["gpus"]
            if g["index"] in indices
        }

    def _client(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=self._timeout)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _fetch(self) -> dict[str, Any]:
        try:
            response = self._client().get(self.url)
            response.raise_for_status()
            doc = response.json()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            hint = " (is it a joulebench mock server?)" if is_not_found(exc) else ""
            raise BackendError(f"cannot read {self.url}: {http_problem(exc)}{hint}") from None
        if not isinstance(doc, dict) or doc.get("schema_version") != SIM_SCHEMA_VERSION:
            raise BackendError(f"{self.url}: expected schema_version {SIM_SCHEMA_VERSION}")
        gpus = doc.get("gpus")
        if not isinstance(gpus, list) or not gpus:
            raise BackendError(f"{self.url}: no 'gpus' in the document")
        if not all(isinstance(g, dict) and isinstance(g.get("index"), int) for g in gpus):
            raise BackendError(f"{self.url}: every GPU needs an integer 'index'")
        return doc

    def _gpu(self, index: int) -> tuple[dict[str, Any], int | None]:
        gpu, t_ns, _ = self._reading(index)
        return gpu, t_ns

    def _reading(self, index: int) -> tuple[dict[str, Any], int | None, float]:
        """This GPU's entry, when it was computed (our clock, where known) and the simulation's speed."""
        doc = self._fetch()
        for gpu in doc["gpus"]:
            if gpu.get("index") == index:
                break
        else:
            raise BackendError(f"GPU {index}: missing from {self.url}")
        if gpu.get("error") is not None:
            # The simulated GPU's read failed, as an NVML call on a lost GPU fails: this GPU only.
            raise BackendError(f"GPU {index}: {gpu['error']} (simulated)")
        # On the same kernel the mock's monotonic stamp is ours: it says exactly when it computed
        # the reading, which is better than the midpoint of our HTTP round trip.
        clock = doc.get("clock") or {}
        same_kernel = bool(self._boot_id) and clock.get("boot_id") == self._boot_id
        speed = doc.get("speed")
        if not isinstance(speed, (int, float)) or not math.isfinite(speed) or speed <= 0:
            speed = 1.0  # a document without a usable speed: take the counter to run in real time
        return gpu, int(clock["mono_ns"]) if same_kernel and "mono_ns" in clock else None, float(speed)

    def devices(self) -> list[GpuIdentity]:
        return list(self._devices.values())

    def read_power(self, index: int) -> PowerReading:
        gpu, t_ns = self._gpu(index)
        try:
            return PowerReading(instant_w=float(gpu["power_w"]), t_ns=t_ns)
        except (KeyError, TypeError, ValueError):
            raise BackendError(f"GPU {index}: no valid power_w in {self.url}") from None

    def read_energy(self, index: int) -> EnergyReading:
        gpu, t_ns, speed = self._reading(index)
        try:
            return EnergyReading(energy_j=float(gpu["energy_j"]), t_ns=t_ns, speed=speed)
        except (KeyError, TypeError, ValueError):
            raise BackendError(f"GPU {index}: no valid energy_j in {self.url}") from None

    def read_state(self, index: int) -> GpuState:
        gpu, _ = self._gpu(index)

        def num(key: str) -> float | None:
            value = gpu.get(key)
            return float(value) if isinstance(value, (int, float)) else None

        # The mock says which reasons are set (its `throttle_reasons`); older mocks do not, and the
        # power cap is then inferred from power at the limit.
        reasons = gpu.get("throttle_reasons")
        return GpuState(
            throttle_reasons=reasons
            if isinstance(reasons, int)
            else _throttle_reasons(num("power_w"), num("power_limit_w")),
            power_limit_w=num("power_limit_w"),
            temperature_c=num("temperature_c"),
            sm_clock_hz=num("sm_clock_hz"),
            mem_clock_hz=num("mem_clock_hz"),
            utilization_gpu=num("utilization_gpu"),
            utilization_memory=num("utilization_memory"),
        )

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()


def _throttle_reasons(power_w: float | None, limit_w: float | None) -> int:
    """The simulated GPU's clock-event reasons: none, except the power cap.

    The mock has no thermal or clock model to throttle; the one thing it does is stretch a step that
    would draw more than the power limit until it draws exactly the limit (harness/mock/engine.py).
    Power at the limit is therefore the software power cap at work, as NVML would report it.
    """
    if power_w is not None and limit_w is not None and power_w >= limit_w:
        return SW_POWER_CAP
    return 0
