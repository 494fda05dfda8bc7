"""docs/results/gpu/transports-vllm-h200: the page quotes benchmarks/gpu/transports_page.py's output on
the committed run folders, and its prose the figures of those runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from joulebench_testkit import REPO

FOLDER = REPO / "docs" / "results" / "gpu" / "transports-vllm-h200"
sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
from transports_page import runs  # noqa: E402


def test_the_page_is_the_scripts_output_on_the_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu" / "transports_page.py"), str(FOLDER)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() in (FOLDER / "README.md").read_text()


def test_the_prose_states_the_runs_figures() -> None:
    by = runs(FOLDER)
    assert [len(v) for v in by.values()] == [3, 3]
    assert all(r["once"] and r["ok"] == r["rows"] == 500 for v in by.values() for r in v)
    prose = " ".join((FOLDER / "README.md").read_text().split())

    def ranged(transport: str, key: str) -> str:
        values = [r[key] for r in by[transport]]
        return f"{np.median(values):.2f} ms ({min(values):.2f}–{max(values):.2f})"

    assert f"wire of {ranged('sender', 'wire_p99').replace('(', '(runs ')} against aiohttp's" in prose
    assert f"aiohttp's {ranged('aiohttp', 'wire_p99')}" in prose
    assert ranged("sender", "wire_max").replace(" ms (", " ms late (") in prose
    flights = [r["in_flight_max"] for v in by.values() for r in v]
    assert f"at most {min(flights)}–{max(flights)} requests in flight" in prose
    # Every run's energy carries the flag the page names.
    for summary in FOLDER.glob("*/*/summary.json"):
        assert "short_window" in json.loads(summary.read_text())["run"]["flags"]
