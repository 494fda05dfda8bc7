"""benchmarks/shape_proxy.py runs end to end with tiny sizes, so the one full run behind
benchmarks/results/shape_proxy.md cannot rot; its figures are checked for what must hold anywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from joulebench_testkit import REPO

pytestmark = pytest.mark.slow


def test_runs_and_writes_json_and_markdown(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "shape_proxy.py"), "--rates", "50", "--duration", "1",
         "--precision-duration", "1", "--window-offered", "60", "--pace", "60", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads((tmp_path / "shape_proxy.json").read_text())
    (latency,) = doc["latency"]
    assert latency["rate"] == 50 and latency["proxy"]["status"] == {"ok": 50} == latency["direct"]["status"]
    assert latency["proxy_hold_ns_max"] == 0  # passthrough holds nothing
    assert latency["proxy_delay_ms"]["p50"] >= 0 and latency["proxy_cpu_us_per_request"] > 0
    assert [p["policy"] for p in doc["precision"]] == ["window-0.1s", "pace-60rps"]
    for point in doc["precision"]:
        assert point["early_releases"] == 0 and point["requests"] == int(point["offered_rate"])  # 1 s of it
        assert point["release_minus_intended_ms"]["p50"] >= 0
    table = (tmp_path / "shape_proxy.md").read_text()
    assert "## Added latency, `passthrough`" in table and "| window-0.1s | 60 | 60 |" in table
