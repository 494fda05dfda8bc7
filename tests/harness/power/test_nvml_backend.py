"""NvmlBackend against the fake pynvml module (same names, constants, error type and ctypes structs)."""

from __future__ import annotations

import re
from pathlib import Path

import pynvml
import pytest
from fake_pynvml import FakeGpu, FakeNvml

from foundation.errors import InputError
from harness.power.gpu_backend import BackendError, Unsupported, parse_gpus
from harness.power.nvml import NvmlBackend

NVML_SOURCE = Path(__file__).resolve().parents[3] / "harness" / "power" / "nvml.py"


def test_every_nvml_name_the_backend_uses_exists_in_real_pynvml_and_in_the_fake():
    # The fake could otherwise hide a typo that only the GPU machine would reveal.
    source = NVML_SOURCE.read_text()
    # Attribute uses (nv.X, nvml.X, self._nv.X) and names looked up by string ("NVML_...").
    names = set(re.findall(r"(?:\bnv|\bnvml|self\._nv)\.(\w+)", source))
    names |= set(re.findall(r"\"((?:nvml|NVML_)\w+)\"", source))
    assert {
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetFieldValues",
        "NVML_FI_DEV_POWER_INSTANT",
    } <= names
    fake = FakeNvml([])
    for name in sorted(names):
        if name == "nvmlDeviceGetCurrentClocksThrottleReasons":
            assert hasattr(pynvml, name)  # only the fallback for old releases; the fake has the new name
            continue
        assert hasattr(pynvml, name), f"pynvml has no {name}"
        assert hasattr(fake, name), f"the fake has no {name}"


def test_identity_units_and_capabilities():
    fake = FakeNvml(
        [
            FakeGpu("GPU-aaaa", power_w=250.0),
            FakeGpu("GPU-bbbb", name="Tesla P100", power_w=80.0, counter=False, instant_field=False),
        ]
    )
    backend = NvmlBackend(nvml=fake)
    a, b = backend.devices()
    assert (a.index, a.uuid, a.name, a.driver) == (0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", "580.95.05")
    assert (a.has_counter, a.instant_power) == (True, "field")
    assert (b.has_counter, b.instant_power) == (False, "power_usage")

    power = backend.read_power(0)
    assert power.instant_w == 250.0  # mW → W
    assert power.average_w == pytest.approx(250.0)
    assert backend.read_power(1).instant_w == pytest.approx(80.0)  # nvmlDeviceGetPowerUsage fallback
    assert backend.read_power(1).average_w is None

    energy = backend.read_energy(0).energy_j  # mJ → J, the exact integral so far
    assert energy == pytest.approx(fake.energy_j(0), abs=1e-3)
    with pytest.raises(Unsupported):
        backend.read_energy(1)

    state = backend.read_state(0)
    assert state.power_limit_w == 700.0
    assert (state.sm_clock_hz, state.mem_clock_hz) == (1.98e9, 2.619e9)
    assert state.utilization_gpu == pytest.approx(0.97) and state.utilization_memory == pytest.approx(0.48)
    assert state.temperature_c == 52.0 and state.throttle_reasons == 0
    backend.close()
    assert fake.initialized == 0


def test_only_the_fast_field_call_is_used_for_power():
    fake = FakeNvml([FakeGpu("GPU-0")])
    backend = NvmlBackend(nvml=fake)
    fake.calls.clear()
    for _ in range(5):
        backend.read_power(0)
    # nvmlDeviceGetPowerUsage is a lagging 1 s average on Ampere+: never the primary power reading.
    assert fake.calls == {"nvmlDeviceGetFieldValues": 5}


def test_errors_on_one_gpu_leave_the_others_readable():
    fake = FakeNvml([FakeGpu("GPU-0"), FakeGpu("GPU-1")])
    backend = NvmlBackend(nvml=fake)
    fake.gpus[0].fail = {
        "nvmlDeviceGetFieldValues",
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetTemperature",
    }
    with pytest.raises(BackendError, match="GPU 0: power: GPU is lost"):
        backend.read_power(0)
    with pytest.raises(BackendError, match="GPU 0: energy counter"):
        backend.read_energy(0)
    # One failing state item: the rest of the state is still there.
    state = backend.read_state(0)
    assert state.temperature_c is None and state.power_limit_w == 700.0
    assert backend.read_power(1).instant_w == 120.0
    assert backend.read_energy(1).energy_j >= 0


def test_a_gpu_that_fails_at_start_is_still_sampled():
    fake = FakeNvml([FakeGpu("GPU-0", fail={"nvmlDeviceGetUUID", "nvmlDeviceGetName"}), FakeGpu("GPU-1")])
    a, b = NvmlBackend(nvml=fake).devices()
    assert (a.uuid, a.name) == ("", "")
    assert b.uuid == "GPU-1"


def test_no_nvml_library_is_a_one_line_input_error():
    with pytest.raises(
        InputError, match=r"--backend nvml: NVML is not available on this machine \(NVML Shared"
    ):
        NvmlBackend(nvml=FakeNvml([], library=False))


def test_no_nvml_on_this_machine_with_the_real_pynvml():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML")
    with pytest.raises(InputError, match="NVML is not available on this machine"):
        NvmlBackend()


def test_unknown_gpu_index():
    fake = FakeNvml([FakeGpu("GPU-0"), FakeGpu("GPU-1")])
    with pytest.raises(InputError, match=r"--gpus: no GPU 5 on this machine \(it has: 0, 1\)"):
        NvmlBackend([0, 5], nvml=fake)
    assert fake.initialized == 0  # NVML shut down again on the way out
    assert [d.index for d in NvmlBackend([1], nvml=fake).devices()] == [1]


@pytest.mark.parametrize(
    ("text", "expected"), [("all", None), ("ALL", None), ("0", [0]), ("0,2", [0, 2]), (" 3 , 1 ", [3, 1])]
)
def test_parse_gpus(text, expected):
    assert parse_gpus(text) == expected


@pytest.mark.parametrize(
    ("text", "message"), [("0,x", "expected 'all'"), ("-1", "expected"), ("1,1", "twice"), ("", "")]
)
def test_parse_gpus_rejects(text, message):
    with pytest.raises(InputError, match=f"--gpus: .*{message}"):
        parse_gpus(text)
