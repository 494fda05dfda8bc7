"""benchmarks/reliability.py runs end to end at tiny sizes (about 2 minutes), so the README's reliability
table can always be made again: the JSON holds every part, the .md one table row per check, and the
checks that hold today still hold (fault statuses as the seeded draw says, no canary found, the search
control found, every regression case one line, no new fuzz violation)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from joulebench_testkit import REPO

pytestmark = pytest.mark.slow

SIZES = ["--fault-requests", "10", "--kill-requests", "10", "--power-requests", "6", "--fuzz-examples", "1",
         "--secret-requests", "2"]  # fmt: skip


def test_reliability_benchmark_at_tiny_sizes(tmp_path: Path) -> None:
    out = tmp_path / "results" / "reliability.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "reliability.py"), "--out", str(out), *SIZES],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    doc = json.loads(out.read_text())
    assert set(doc["part_seconds"]) == {"faults", "kills", "power_kill", "inputs", "secrets"}

    for run in doc["faults"]:
        assert run["planned"] == 10 and run["exactly_once"] == 10 and run["unplanned_rows"] == 0, run
        assert run["classified"] == 10, run["misclassified"]
        assert sum(run["drawn"].values()) == 10
    assert len(doc["kills"]) == 5 and all("at_kill" in kill for kill in doc["kills"])
    assert "all_in" in doc["power_kill"] and doc["power_kill"]["hit"]
    fuzz, regression = doc["inputs"]["fuzz"], doc["inputs"]["regression"]
    assert fuzz["tried"] == fuzz["commands"] and fuzz["new_violations"] == [], fuzz["new_violations"]
    assert regression["tried"] >= 1 and regression["one_line_error"] == regression["tried"], regression
    secrets = doc["secrets"]
    assert secrets["not_found"] == len(secrets["planted"]) >= 7, secrets["found_in"]
    assert secrets["control_found"] and all(secrets["used"].values()), secrets

    table = out.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("Figures from one run of `python benchmarks/reliability.py --out")
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| tried")]
    assert len(rows) == 2 + 5 + 1 + 2 + 1  # faults x2, kills, the sidecar kill, inputs x2, secrets
    assert "10/10 logged exactly once; 10/10 with the status" in rows[0]
