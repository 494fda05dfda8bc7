"""benchmarks/gpu/transports_page.py: its table from run folders, and one line for a folder it cannot use.
(The committed vLLM comparison it renders is checked in tests/e2e/test_committed_transports.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import REPO

SCRIPT = REPO / "benchmarks" / "gpu" / "transports_page.py"
RUN = REPO / "docs" / "results" / "gpu" / "sender-transformers-h200" / "run"  # a sender run on a GPU


def _page(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True)


def _as(transport: str, dest: Path) -> None:
    shutil.copytree(RUN, dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["options"]["transport"] = transport
    (dest / "manifest.json").write_text(json.dumps(manifest))


def test_each_run_is_a_row_and_each_transport_a_median(tmp_path: Path) -> None:
    _as("aiohttp", tmp_path / "aiohttp" / "r1")
    _as("sender", tmp_path / "sender" / "r1")
    done = _page(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # 40 measured rows of 40 planned, each once; the wire lateness as the committed page quotes it
    assert "| 1 | aiohttp | 40, yes | 40 | 0.23 / 0.31 / 0.32 |" in lines[2]
    assert lines[3].startswith("| 1 | sender | 40, yes | 40 |")
    assert lines[-1].startswith("| sender | 1 | 0.23 (0.23–0.23) |")


def test_a_request_that_never_reached_the_wire_is_counted_not_a_nan(tmp_path: Path) -> None:
    _as("aiohttp", tmp_path / "aiohttp" / "r1")
    _as("sender", tmp_path / "sender" / "r1")
    requests = tmp_path / "sender" / "r1" / "requests.parquet"
    rows = pd.read_parquet(requests)
    rows.loc[rows.index[-1], "wire_ns"] = None
    rows.to_parquet(requests)
    done = _page(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "| 1 | sender | 40, yes (1 never on the wire, left out of its lateness) | 40 |" in done.stdout
    assert "nan" not in done.stdout


@pytest.mark.parametrize("case", ["missing", "wrong-transport", "empty", "corrupt"])
def test_a_folder_it_cannot_use_is_one_line(tmp_path: Path, case: str) -> None:
    _as("aiohttp", tmp_path / "aiohttp" / "r1")
    if case == "wrong-transport":
        _as("aiohttp", tmp_path / "sender" / "r1")
    elif case == "empty":
        (tmp_path / "sender").mkdir()
    elif case == "corrupt":
        _as("sender", tmp_path / "sender" / "r1")
        (tmp_path / "sender" / "r1" / "requests.parquet").write_bytes(b"not parquet")
    done = _page(tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(str(tmp_path / "sender"))
