"""Fixtures for the power tests: in-process sidecars on fake NVML GPUs."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fake_pynvml import FakeGpu, FakeNvml

from harness.power.nvml import NvmlBackend
from harness.power.sidecar_server import Sidecar


@pytest.fixture
def fake_sidecar() -> Iterator[Callable[..., tuple[Sidecar, FakeNvml, str]]]:
    """Start in-process sidecars over fake NVML GPUs: make(gpus, interval_s=..., **sidecar kwargs)."""
    started: list[Sidecar] = []

    def make(gpus: list[FakeGpu] | None = None, port: int = 0, **kwargs) -> tuple[Sidecar, FakeNvml, str]:
        fake = FakeNvml(gpus or [FakeGpu("GPU-fake-0")])
        car = Sidecar(NvmlBackend(nvml=fake), host="127.0.0.1", port=port, **kwargs)
        car.start()
        started.append(car)
        host, port = car.address
        return car, fake, f"http://{host}:{port}"

    yield make
    for car in started:
        car.stop()
