"""benchmarks/gpu/engines_page.py on the committed vLLM half of engines-h200, set against a copy of itself
with each all-in figure doubled: the ratio per arm is 2 with an interval around it, the shaping ratios
are the same for both (a common factor cancels)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from joulebench_testkit import REPO

from harness.runfolder.experiment_files import ExperimentFolder

VLLM = REPO / "docs" / "results" / "engines-h200" / "vllm"


def test_a_doubled_engine_reads_twice_as_dear_and_shaped_alike(tmp_path: Path) -> None:
    shutil.copytree(VLLM, tmp_path / "vllm", ignore=shutil.ignore_patterns("runs", "report.html", "logs"))
    shutil.copytree(tmp_path / "vllm", tmp_path / "dear")
    (tmp_path / "dear" / "vllm_server.json").rename(tmp_path / "dear" / "dear_server.json")
    dear = ExperimentFolder(tmp_path / "dear" / "experiment")
    cells = dear.read_cells()
    dear.write_cells(cells.assign(j_per_request_all_in=cells["j_per_request_all_in"] * 2))
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu" / "engines_page.py"),
         "--engine", f"vllm={tmp_path / 'vllm'}", "--engine", f"dear={tmp_path / 'dear'}"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    energy = [r for r in rows if r[-1].strip().startswith("2x [")]  # arm, vllm, dear, dear / vllm
    assert len(energy) == 6 and all(r[-1].strip().endswith(", resolved") for r in energy)
    shaping = [r for r in rows if len(r) == 3 and r[1].strip().endswith("resolved")]  # arm, vllm, dear
    assert len(shaping) == 5 and all(r[1] == r[2] for r in shaping)
