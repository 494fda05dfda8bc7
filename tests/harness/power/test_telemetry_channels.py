"""The telemetry kept with the power (issue 16): NVML state reads guarded item by item, state rows in the
sample log, and CPU package / DRAM energy from a powercap tree (RAPL) with its counter's wraparound."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fake_pynvml import NVML_ERROR_NOT_SUPPORTED, FakeGpu, FakeNvml, NVMLError

from harness.power.gpu_backend import BackendError
from harness.power.nvml import NvmlBackend
from harness.power.rapl import ROOT_ENV, RaplSampler, WrapCounter, discover
from harness.power.samplelog import HOST_ROW, STATE_ROW, SampleRing, SampleRows, read_log_file
from harness.power.series import STATE_COLUMNS


class NoReasonsNvml(FakeNvml):
    """A GPU whose NVML does not support clock-event reasons (as on some older boards)."""

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons")
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)


def test_state_reads_each_item_and_an_unsupported_one_is_not_asked_again() -> None:
    fake = NoReasonsNvml([FakeGpu("GPU-0", power_w=300.0)])
    backend = NvmlBackend(nvml=fake)
    for _ in range(3):
        state = backend.read_state(0)
        assert state.throttle_reasons is None  # unsupported: empty, not a failed sampler
        assert (state.sm_clock_hz, state.mem_clock_hz, state.power_limit_w) == (1.98e9, 2.619e9, 700.0)
        assert state.temperature_c == 55.0
    assert fake.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1
    assert fake.calls["nvmlDeviceGetClockInfo"] == 6  # SM and memory, three reads


def test_a_failing_item_is_retried_and_only_all_failing_fails_the_read() -> None:
    gpu = FakeGpu("GPU-0", throttle=0x4, fail={"nvmlDeviceGetTemperature"})
    fake = FakeNvml([gpu])
    backend = NvmlBackend(nvml=fake)
    state = backend.read_state(0)
    assert state.temperature_c is None and state.throttle_reasons == 0x4 and state.power_limit_w == 700.0
    backend.read_state(0)
    assert fake.calls["nvmlDeviceGetTemperature"] == 2  # a failure (GPU lost) is not "unsupported"
    gpu.fail = {name for name in dir(fake) if name.startswith("nvmlDeviceGet")}
    with pytest.raises(BackendError, match="GPU 0: state"):
        backend.read_state(0)


def test_state_rows_round_trip_through_the_ring_json_and_file(tmp_path: Path, fake_sidecar) -> None:
    ring = SampleRing(8)
    ring.append_power(1, 0, 250.0, None)
    ring.append_state(2, 0, [1.98e9, 2.619e9, 61.5, 700.0, 0x4 | 0x1])
    ring.append_state(3, 1, [None, None, 40.0, None, None])
    rows, _, _ = ring.since(0)
    lists = rows.to_lists()
    assert lists[1][3:] == ["s", None, None, None, 0, 1.98e9, 2.619e9, 61.5, 700.0, 5]
    assert lists[2][8:] == [None, None, 40.0, None, None]
    back = SampleRows.from_lists(json.loads(json.dumps(lists)))
    assert back.to_lists() == lists and list(back.kind) == [0, STATE_ROW, STATE_ROW]
    with pytest.raises(ValueError, match="row 0"):
        SampleRows.from_lists([[0, 5, 0, "s", None, None, None, 0]])  # a state row without its values

    # A sidecar on a fake GPU: its state loop puts a row per reading into /samples and its --log file.
    log = tmp_path / "samples.jsonl"
    car, _, url = fake_sidecar([FakeGpu("GPU-0", throttle=0x4)], interval_s=0.05, log_path=log)
    time.sleep(0.3)
    doc = httpx.get(url + "/samples", params={"since": 0, "state": 1}).json()
    assert doc["state_columns"] == list(STATE_COLUMNS)
    states = [r for r in doc["rows"] if r[3] == "s"]
    assert states and states[0][8:] == [1.98e9, 2.619e9, 46.0, 700.0, 4]
    car.stop()
    (session,) = read_log_file(log)
    assert np.sum(session.rows.kind == STATE_ROW) >= 1


def _zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = 10_000_000) -> Path:
    folder = root / zone
    folder.mkdir(parents=True)
    (folder / "name").write_text(name + "\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return folder


def test_rapl_discovers_package_and_dram_and_says_why_when_absent(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    assert "does not expose RAPL" in (discover(root)[1] or "")
    root.mkdir()
    assert "no package or DRAM zone" in (discover(root)[1] or "")
    _zone(root, "intel-rapl:0", "package-0", 5)
    _zone(root, "intel-rapl:0:0", "dram", 7)
    _zone(root, "intel-rapl:0:1", "core", 9)  # inside the package: not a channel of its own
    domains, note = discover(root)
    assert note is None
    assert [(d.index, d.zone, d.name, d.kind) for d in domains] == [
        (0, "intel-rapl:0", "package-0", "package"),
        (1, "intel-rapl:0:0", "dram", "dram"),
    ]
    # Unreadable energy (root-only since Linux 5.10; a folder here, as tests run as root).
    locked = tmp_path / "locked"
    (_zone(locked, "intel-rapl:0", "package-0", 5) / "energy_uj").unlink()
    (locked / "intel-rapl:0" / "energy_uj").mkdir()
    domains, note = discover(locked)
    assert domains == [] and "not readable" in (note or "")


def test_rapl_counter_wraparound_is_stitched() -> None:
    counter = WrapCounter(max_range_uj=1_000_000)
    readings = [900_000, 990_000, 20_000, 500_000, 10_000]  # wraps twice
    joules = [counter.push(r) for r in readings]
    assert joules == pytest.approx([0.9, 0.99, 1.02, 1.5, 2.01])


def test_rapl_sampler_writes_host_energy_rows(tmp_path: Path) -> None:
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 9_000_000)
    domains, _ = discover(tmp_path)
    ring = SampleRing(16)
    sampler = RaplSampler(ring, domains, period_s=0.5)
    sampler.tick()
    (package / "energy_uj").write_text("1000000\n")  # wrapped at 10 J: 2 J more
    sampler.tick()
    rows, _, _ = ring.since(0)
    assert list(rows.kind) == [HOST_ROW, HOST_ROW] and list(rows.gpu) == [0, 0]
    assert rows.energy_j.tolist() == pytest.approx([9.0, 11.0])


def test_sidecar_header_names_the_rapl_domains_or_why_not(tmp_path, monkeypatch, fake_sidecar) -> None:
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "absent"))
    _, _, url = fake_sidecar()
    assert httpx.get(url + "/samples?state=1").json()["host_energy"] == {
        "domains": [],
        "note": f"no {tmp_path / 'absent'}: this host does not expose RAPL through powercap",
    }
    _zone(tmp_path / "pc", "intel-rapl:0", "package-0", 1_234_000)
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "pc"))
    _, _, url = fake_sidecar()
    time.sleep(0.1)
    doc = httpx.get(url + "/samples?state=1").json()
    assert [d["name"] for d in doc["host_energy"]["domains"]] == ["package-0"]
    assert any(r[3] == "h" and r[6] == 1.234 for r in doc["rows"])
    metrics = httpx.get(url + "/metrics").text
    assert (
        'joulebench_host_energy_joules_total{domain="package-0",kind="package",zone="intel-rapl:0"} 1.234'
        in metrics
    )
