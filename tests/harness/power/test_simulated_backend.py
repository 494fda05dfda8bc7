"""The simulated backend and the `joulebench sidecar` command against the real mock server's simulated GPU."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import numpy as np
import pytest
from joulebench_testkit import free_port, one_line_error, require_tool, run_joulebench, run_mock_server
from joulebench_testkit import simulated_sidecar as sidecar_process

from foundation.errors import InputError
from harness.power.samplelog import read_log_file
from harness.power.simulated import SimulatedBackend
from harness.power.sources import SidecarSource

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """One mock server for the tests that don't restart it (it takes seconds to start)."""
    with run_mock_server(log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server


def sim_gpu(mock_url: str) -> dict:
    return httpx.get(mock_url + "/sim/gpu").json()


def load(mock_url: str, seconds: float) -> threading.Thread:
    """Requests against the mock for a while, so its simulated GPU draws more than idle power."""

    def send() -> None:
        deadline = time.monotonic() + seconds
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                body = {"model": "mock", "prompt": "hello " * 50, "max_tokens": 64}
                client.post(mock_url + "/v1/completions", json=body)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    return threads


def test_backend_reads_the_simulated_gpu(mock):
    backend = SimulatedBackend(mock.url)
    try:
        (gpu,) = backend.devices()
        doc = sim_gpu(mock.url)["gpus"][0]
        assert (gpu.index, gpu.uuid, gpu.name, gpu.driver) == (0, doc["uuid"], doc["name"], doc["driver"])
        assert gpu.has_counter and gpu.instant_power == "simulated"
        before = time.monotonic_ns()
        energy = backend.read_energy(0)
        after = time.monotonic_ns()
        # Same kernel: the reading carries the mock's own monotonic stamp of the moment it describes.
        assert energy.t_ns is not None and before <= energy.t_ns <= after
        later = sim_gpu(mock.url)  # the counter is the exact integral: it grew by power x time since
        elapsed_s = (later["clock"]["mono_ns"] - energy.t_ns) / 1e9
        grown = later["gpus"][0]["energy_j"] - energy.energy_j
        assert grown == pytest.approx(later["gpus"][0]["power_w"] * elapsed_s, rel=0.02, abs=0.05)
        assert backend.read_power(0).instant_w > 0
        state = backend.read_state(0)
        assert state.power_limit_w == doc["power_limit_w"] and state.sm_clock_hz == doc["sm_clock_hz"]
        assert 0 <= state.utilization_gpu <= 1
    finally:
        backend.close()
    with pytest.raises(InputError, match=r"--gpus: no GPU 3 on http://.*/sim/gpu \(it has: 0\)"):
        SimulatedBackend(mock.url, gpus=[3])


def test_acceptance_commands(mock):
    """The issue's acceptance: a simulated sidecar's /metrics has the energy counter and passes promtool."""
    promtool = require_tool("promtool", "apt-get install prometheus")
    with sidecar_process(mock.url, "--interval", "0.05") as sidecar:
        time.sleep(1.0)
        text = httpx.get(sidecar.url + "/metrics").text
        lines = [line for line in text.splitlines() if line.startswith("joulebench_gpu_energy_joules_total")]
        assert (
            lines
            and 'gpu="0"' in lines[0]
            and 'method="counter"' in lines[0]
            and 'uuid="GPU-mock-' in lines[0]
        )
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_cadence_lag_and_energy_under_the_simulated_backend(mock, tmp_path):
    log = tmp_path / "samples.jsonl"
    interval = 0.05
    with sidecar_process(mock.url, "--interval", str(interval), "--log", str(log)) as sidecar:
        url = sidecar.url
        source = SidecarSource(url)
        time.sleep(0.8)
        first = sim_gpu(mock.url)
        threads = load(mock.url, 2.5)
        for t in threads:
            t.join()
        time.sleep(0.8)
        last = sim_gpu(mock.url)
        time.sleep(0.8)  # a counter reading after the window
        metrics = httpx.get(url + "/metrics").text
        data = source.read(first["clock"]["mono_ns"], last["clock"]["mono_ns"])
        status = sidecar.stop(timeout_s=30)  # SIGTERM, as compose and Kubernetes stop it
    assert status == 0 and "joulebench sidecar: stopped" in sidecar.log.read_text()

    def value(name: str, loop: str) -> float:
        (line,) = [x for x in metrics.splitlines() if x.startswith(f'{name}{{loop="{loop}"}}')]
        return float(line.split()[-1])

    samples, missed = (
        value("joulebench_sampler_samples_total", "power"),
        value("joulebench_sampler_missed_total", "power"),
    )
    lag_sum = value("joulebench_sampler_lag_seconds_sum", "power")
    assert samples >= 0.6 * 4.5 / interval and missed <= 0.2 * samples
    assert lag_sum / samples < interval  # mean lateness below one interval

    (series,) = data.series
    assert data.clock["mode"] == "same-host" and series.issues == []
    # Energy over the window = the mock's exact counter difference, though the load changed the power.
    t0, t1 = first["clock"]["mono_ns"], last["clock"]["mono_ns"]
    ours = np.interp([t0, t1], series.t_ns, series.energy_j)
    truth = last["gpus"][0]["energy_j"] - first["gpus"][0]["energy_j"]
    assert truth > 1.05 * 119.0 * (t1 - t0) / 1e9  # the load did raise power above idle
    assert ours[1] - ours[0] == pytest.approx(truth, rel=0.03)
    power_t = [r[1] for s in read_log_file(log) for r in s.rows.to_lists() if r[3] == "p"]
    assert np.median(np.diff(power_t)) / 1e9 == pytest.approx(interval, abs=0.01)


def test_mock_restart_is_a_stitched_counter_reset(mock_server):
    port = free_port()
    first = mock_server("--port", str(port))
    with sidecar_process(first.url, "--interval", "0.05") as sidecar:
        url = sidecar.url
        time.sleep(1.2)
        before = float(_metric(url, "joulebench_gpu_energy_joules_total"))
        first.stop()
        time.sleep(0.6)  # reads fail meanwhile: counted, the sidecar keeps running
        mock_server("--port", str(port))
        time.sleep(1.5)
        after = float(_metric(url, "joulebench_gpu_energy_joules_total"))
        assert float(_metric(url, "joulebench_gpu_energy_resets_total")) == 1
        failed = 'joulebench_gpu_read_errors_total{gpu="0",kind="failed",loop="counter"'
        assert float(_metric(url, failed)) >= 1
        assert after > before  # the new mock's counter started from zero: stitched, not a drop


def _metric(url: str, prefix: str) -> str:
    (line,) = [x for x in httpx.get(url + "/metrics").text.splitlines() if x.startswith(prefix)]
    return line.split()[-1]


def test_unknown_gpu_index_on_the_command_line(mock):
    result = run_joulebench(
        "sidecar", "--backend", "simulated", "--simulate-from", mock.url, "--gpus", "1", "--port", "0",
        timeout=60,
    )  # fmt: skip
    message = one_line_error(result.stderr, result.returncode)
    assert message == f"--gpus: no GPU 1 on {mock.url}/sim/gpu (it has: 0)"
