"""docs/results/gpu/transports-vllm-h200 (the sender thread) and transports-process-vllm-h200 (the sender
process): each page quotes benchmarks/gpu/transports_page.py's output on its committed run folders, and
its prose the figures of those runs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from joulebench_testkit import REPO

GPU = REPO / "docs" / "results" / "gpu"
FOLDERS = [GPU / "transports-vllm-h200", GPU / "transports-process-vllm-h200"]
sys.path.insert(0, str(REPO / "benchmarks" / "gpu"))
from transports_page import runs  # noqa: E402


def _ranged(values: list[float], unit: str = " ms", digits: int = 2) -> str:
    return f"{np.median(values):.{digits}f}{unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_the_page_is_the_scripts_output_on_the_runs(folder) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu" / "transports_page.py"), str(folder)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip() in (folder / "README.md").read_text()


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_the_prose_states_the_runs_figures(folder) -> None:
    by = runs(folder)
    assert [len(v) for v in by.values()] == [3, 3]
    assert all(r["once"] and r["ok"] == r["rows"] == 500 for v in by.values() for r in v)
    prose = " ".join((folder / "README.md").read_text().split())

    def ranged(transport: str, key: str) -> str:
        return _ranged([r[key] for r in by[transport]])

    assert f"wire of {ranged('sender', 'wire_p99').replace('(', '(runs ')} against aiohttp's" in prose
    assert f"aiohttp's {ranged('aiohttp', 'wire_p99')}" in prose
    assert ranged("sender", "wire_max").replace(" ms (", " ms late (") in prose
    flights = [r["in_flight_max"] for v in by.values() for r in v]
    assert f"at most {min(flights)}–{max(flights)} requests in flight" in prose
    # Every run's energy carries the flag the page names.
    for summary in folder.glob("*/*/summary.json"):
        assert "short_window" in json.loads(summary.read_text())["run"]["flags"]


def test_the_process_page_compares_with_the_threads_runs_as_they_were() -> None:
    thread, process = (runs(f) for f in FOLDERS)
    prose = " ".join((FOLDERS[1] / "README.md").read_text().split())
    assert f"the sender's p99 at the wire was {_ranged([r['wire_p99'] for r in thread['sender']])}" in prose
    ttft = {t: [r["ttft_p50"] for r in v] for t, v in process.items()}
    sender, aiohttp = _ranged(ttft["sender"], " s", 3), _ranged(ttft["aiohttp"], " s", 3)
    assert f"a median of {sender} against {aiohttp}" in prose
    assert max(ttft["aiohttp"]) < min(ttft["sender"])  # "ranges that do not overlap"


def test_the_readme_quotes_both_pages() -> None:
    readme = " ".join((REPO / "README.md").read_text().split())
    for folder in FOLDERS:
        by = runs(folder)
        sender = _ranged([r["wire_p99"] for r in by["sender"]])
        aiohttp = _ranged([r["wire_p99"] for r in by["aiohttp"]])
        assert folder.name in readme
        assert f"{sender.replace('(', '(runs ')} against aiohttp's {aiohttp}" in readme or (
            f"{sender} against {aiohttp}" in readme
        )
