"""benchmarks/gpu/nvml_check.py runs end to end (on the fake pynvml here), so the GPU-machine run can't
crash on a typo; its numbers on the fake are checked against what the fake is known to do."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from joulebench_testkit import REPO

from harness.power.samplelog import read_log_file

pytestmark = pytest.mark.slow

RUN_ON_FAKE = f"""
import runpy, sys
sys.path.insert(0, {str(REPO / "tests" / "harness" / "power")!r})
import fake_pynvml
sys.modules["pynvml"] = fake_pynvml.FakeNvml(
    [fake_pynvml.FakeGpu("GPU-x", power_w=150.0), fake_pynvml.FakeGpu("GPU-y", counter=False)])
sys.argv = ["nvml_check.py", *sys.argv[1:]]
runpy.run_path({str(REPO / "benchmarks" / "gpu" / "nvml_check.py")!r}, run_name="__main__")
"""


def test_runs_and_writes_json_markdown_and_raw_samples(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", RUN_ON_FAKE, "--out", str(out), "--seconds", "2.5", "--cpu-seconds", "1.5"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    res = json.loads((out / "nvml_check.json").read_text())
    # No GPU for a load here: the load phase is skipped and says why, the rest still ran.
    assert res["load_error"] and "load" not in res
    counter_gpu, integrated_gpu = res["idle"]["gpus"]["0"], res["idle"]["gpus"]["1"]
    # The fake's counter changes every 100 ms, like the driver's.
    assert counter_gpu["update_period_ms"]["energy_counter"]["median"] == pytest.approx(100, abs=15)
    assert counter_gpu["mean_power_w"]["counter"] == pytest.approx(150.0, rel=0.1)
    assert counter_gpu["counter_over_integrated"]["instant"]["1s"]["median"] == pytest.approx(1.0, abs=0.15)
    assert integrated_gpu["energy_method"] == "integrated" and integrated_gpu["counter_over_integrated"] == {}
    assert res["idle"]["latency_us"]["read_energy"]["n"] > 20
    assert [c["interval_s"] for c in res["cpu"]] == [0.1, 0.01]
    # CPU time has 10 ms resolution: 1.5 s at 10 Hz may read 0; at 100 Hz it does not.
    assert res["cpu"][0]["cpu_pct_of_one_core"] >= 0 and res["cpu"][1]["cpu_pct_of_one_core"] > 0
    table = (out / "nvml_check.md").read_text()
    assert "## Sidecar CPU cost" in table and "| 0 | idle |" in table
    (session,) = read_log_file(out / "nvml_check_samples.jsonl")
    assert session.header["phase"] == "idle" and len(session.rows) > 100
