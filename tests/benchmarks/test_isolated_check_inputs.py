"""benchmarks/gpu/isolated_check.py on what the committed run does not show: a request the join gave no
energy must fail the acceptance (not be skipped), and the counter is read from every sidecar session with
refused reads left out."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "docs" / "results" / "gpu" / "isolated-h200" / "run"
_spec = importlib.util.spec_from_file_location("isolated_check", REPO / "benchmarks/gpu/isolated_check.py")
assert _spec is not None and _spec.loader is not None
isolated_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isolated_check)


def test_a_request_without_an_error_fails_the_acceptance() -> None:
    good = pd.DataFrame({"error": [0.01, -0.02, 0.0]})
    assert isolated_check.verdict(good)["pass"]
    unattributed = pd.DataFrame({"error": [0.01, -0.02, 0.0, float("nan")]})
    assert not isolated_check.verdict(unattributed)["pass"]
    assert not isolated_check.verdict(pd.DataFrame({"error": []}))["pass"]


def test_the_counter_comes_from_every_session_without_refused_reads(tmp_path: Path) -> None:
    shutil.copy(RUN / "manifest.json", tmp_path / "manifest.json")
    lines = (RUN / "power_samples.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    rows = [json.loads(line) for line in lines[1:]]
    energy = [r for r in rows if r[3] == "e"]
    half = len(rows) // 2
    bad = [9_999_999, energy[5][1] + 1, 0, "e", None, None, 1e9, 8]  # an invalid read (FLAG_INVALID)
    out = [header, *rows[:half], bad, header, *rows[half:]]  # a sidecar restart mid-way
    (tmp_path / "power_samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in out))
    t, e = isolated_check.counter_series(tmp_path)
    assert len(t) == len(energy) and np.all(np.diff(t) > 0)
    assert e.max() < 1e9
