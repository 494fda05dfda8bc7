"""Telemetry kept with the power (issue 16), end to end: the mock server with a 150 W power limit (under
its profile's busy power, so every step runs at the cap), a real `joulebench sidecar --backend
simulated` that also samples a fake powercap tree (RAPL), and `joulebench run` as a user runs it.

The run's raw samples carry the GPU's state rows and the host's energy rows; summary.json's
`power.telemetry` has the GPU's clocks, temperature and 150 W limit, the power cap's share of the arm,
the `gpu_throttled` flag on the arm (printed with the run), and the package and DRAM energy over the
run as the fake counters counted it, wraps included.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from e2e_stack import flag_codes, output, run_folder, summary
from joulebench_testkit import run_joulebench, run_mock_server, simulated_sidecar

pytestmark = pytest.mark.slow

PACKAGE_W, DRAM_W = 60.0, 9.0
RANGE_UJ = 50_000_000  # 50 J: the package counter wraps about every 0.8 s, read every 0.5 s


class FakeRapl:
    """A powercap tree whose counters count PACKAGE_W and DRAM_W from `start` (absolute time), wrapping."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "dram")):
            (root / zone).mkdir(parents=True)
            (root / zone / "name").write_text(name + "\n")
            (root / zone / "max_energy_range_uj").write_text(f"{RANGE_UJ}\n")
        self.start = time.monotonic()
        self._write(0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _write(self, elapsed: float) -> None:
        for zone, watts in (("intel-rapl:0", PACKAGE_W), ("intel-rapl:0:0", DRAM_W)):
            tmp = self.root / zone / "energy_uj.tmp"
            tmp.write_text(f"{round(watts * elapsed * 1e6) % RANGE_UJ}\n")
            os.replace(tmp, self.root / zone / "energy_uj")  # a reader never sees half a number

    def _run(self) -> None:
        k = 1
        while not self._stop.wait(max(0.0, self.start + k * 0.01 - time.monotonic())):
            self._write(time.monotonic() - self.start)
            k += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_throttled_run_keeps_clocks_limit_throttling_and_host_energy(tmp_path: Path, monkeypatch) -> None:
    rapl = FakeRapl(tmp_path / "powercap")
    monkeypatch.setenv("JOULEBENCH_POWERCAP_ROOT", str(rapl.root))  # the sidecar inherits it
    try:
        with (
            run_mock_server("--port", "0", "--set", "gpu.power_limit_w=150") as mock,
            simulated_sidecar(mock.url) as side,
        ):
            result = run_joulebench(
                "run", "--target", mock.url, "--sidecar", side.url, "--n", "120", "--max-tokens", "64",
                "--schedule", "fixed:interval=0.05", "--idle", "1", "--out", "runs", cwd=tmp_path,
            )  # fmt: skip
    finally:
        rapl.stop()
    assert result.returncode == 0, output(result)
    folder = run_folder(result, tmp_path)

    lines = (folder / "power_samples.jsonl").read_text().splitlines()
    assert any(line.startswith("[") and '"s"' in line and line.count(",") == 12 for line in lines)
    assert any(line.startswith("[") and '"h"' in line for line in lines)

    doc = summary(folder)
    telemetry = doc["power"]["telemetry"]
    (gpu,) = telemetry["gpus"]
    assert gpu["power_limits_w"] == [150.0]
    assert gpu["sm_clock_hz"]["max"] == 1.98e9 and gpu["mem_clock_hz"]["median"] == 2.619e9
    assert gpu["temperature_c"]["max"] > gpu["temperature_c"]["min"] > 0  # it warmed under load
    (arm,) = doc["arms"]
    share = gpu["arms"][arm["name"]]["throttle_share"]["sw_power_cap"]
    assert 0 < share <= 1 and gpu["arms"][arm["name"]]["throttled_share"] == share
    throttled = [f for f in doc["flags"] if f["code"] == "gpu_throttled"]
    assert [(f["scope"], f["severity"]) for f in throttled] == [(arm["name"], "warning")]
    assert "gpu_throttled" in arm["flags"] and "power_limit_changed" not in flag_codes(doc)
    assert "the GPU throttled: GPU 0 in" in result.stdout  # printed with the run
    assert "host CPU/DRAM energy (RAPL) over the run, not in any figure above: package-0" in result.stdout

    host = telemetry["host_energy"]
    assert host["available"] is True and host["note"] is None
    duration = doc["run"]["window"]["duration_s"]
    by_kind = {d["kind"]: d for d in host["domains"]}
    # The fake counters count exactly these watts; the sidecar's stitching of their wraps must keep it.
    assert by_kind["package"]["run_j"] == pytest.approx(PACKAGE_W * duration, rel=0.03)
    assert by_kind["dram"]["run_j"] == pytest.approx(DRAM_W * duration, rel=0.03)
    assert by_kind["package"]["arms"][arm["name"]] == pytest.approx(
        PACKAGE_W * arm["window"]["duration_s"], rel=0.05
    )
    # Beside the GPU's energy, never in it: the run's total is the GPU's counter alone.
    assert doc["conservation"]["total_j"] == pytest.approx(doc["run"]["energy_j_total"])
