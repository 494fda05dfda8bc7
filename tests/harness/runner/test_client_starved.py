"""A runner that runs out of descriptors mid-run logs those requests as its own failure
(`client_error`, naming EMFILE), not as the server's `connect_error`; every request still has its row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from joulebench_testkit import REPO, run_joulebench

from harness.runfolder import RunFolder
from harness.runner.fd_limit import FD_MARGIN

STARVED = Path(__file__).with_name("starved_runner.py")
N, SPARE = 40, 10


@pytest.mark.parametrize("transport", ["aiohttp", "sender"])
def test_descriptors_running_out_mid_run_are_the_clients_errors(fast_mock, tmp_path, transport) -> None:
    done = subprocess.run(
        [sys.executable, str(STARVED), fast_mock.url, str(tmp_path), str(N), str(SPARE), transport],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    folder = RunFolder.open(done.stdout.strip())
    rows = folder.requests()
    rows = rows[~rows["warmup"]]
    assert sorted(rows["request_id"]) == list(range(N))
    statuses = rows["status"].value_counts().to_dict()
    assert set(statuses) <= {"ok", "client_error"}, statuses  # the server was never at fault
    assert statuses.get("ok", 0) >= 1 and statuses.get("client_error", 0) >= N // 2, statuses
    errors = rows.loc[rows["status"] == "client_error", "error"]
    assert errors.str.startswith("EMFILE: the process's open-files limit is reached").all(), errors.iloc[0]
    connections = folder.manifest()["connections"]  # the start check passed: the limit covered the pool
    staged = 0 if transport == "aiohttp" else N  # the sender's duplicates: all 40 are due within 50 ms
    assert connections["pool"] == N and connections["fd_limit"][0] == N + staged + FD_MARGIN

    # The figures measure the client: an error flag, so `report --strict` fails (and no verdict).
    report = run_joulebench("report", str(folder.path), "--strict", cwd=tmp_path)
    assert report.returncode == 1, report.stdout + report.stderr
    flags = json.loads((folder.path / "summary.json").read_text())["flags"]
    assert [f["severity"] for f in flags if f["code"] == "client_errors"] == ["error"], flags
    assert "failed in the client, not the server" in report.stdout
