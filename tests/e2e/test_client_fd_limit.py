"""`joulebench run` under an open-files limit below its connection pool: an open-loop pool (a worst
case) is capped to what the limit leaves room for, the extra requests wait in the client and count as
late; what cannot be capped without changing the load (closed-loop users, --max-concurrency as given)
is refused at start, in one line that names the limit, the need and the fix, and nothing is written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import joulebench_argv, one_line_error, run_dirs

from harness.runfolder import RunFolder
from harness.runner.fd_limit import FD_MARGIN

N = 300  # one open-loop arm due within a few ms: a pool of 300 connections, + 64 = 364 descriptors
LIMIT = 128


def run_limited(url: str, out: Path, schedule: str, *extra: str) -> subprocess.CompletedProcess:
    """`joulebench run` with soft and hard open-files limits of LIMIT (no raising it from inside)."""
    args = joulebench_argv(
        "run", "--target", url, "--prompts", "synthetic", "--schedule", schedule,
        "--n", str(N), "--max-tokens", "4", "--warmup", "0", "--no-progress", "--out", str(out), *extra,
    )  # fmt: skip
    return subprocess.run(
        ["sh", "-c", 'ulimit -n "$0" && exec "$@"', str(LIMIT), *args],
        capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def test_an_open_loop_pool_over_the_limit_is_capped_and_waits_in_the_client(mock_server, tmp_path) -> None:
    server = mock_server("--profile", "synthetic-fast")
    out = tmp_path / "runs"
    done = run_limited(server.url, out, "fixed:interval=0.001")
    assert done.returncode == 0, done.stderr
    assert f"open-files limit {LIMIT}: at most {LIMIT - FD_MARGIN} connections at once" in done.stderr
    (path,) = run_dirs(out)
    manifest = RunFolder.open(path).manifest()
    # The default (`--transport auto`) does not take the sender, which cannot make a request wait.
    assert manifest["options"]["transport"] == "aiohttp"
    reason = manifest["options"]["transport_reason"]
    assert reason.startswith("auto: aiohttp, the open-files limit leaves room"), reason
    assert f"transport: {reason}" in " ".join(done.stderr.split())  # said before the run, too
    connections = manifest["connections"]
    assert connections["pool"] == LIMIT - FD_MARGIN and connections["capped_by_fd_limit"] is True
    requests = pd.read_parquet(RunFolder.open(path).requests_path)
    assert (requests["status"] == "ok").all(), requests["status"].value_counts()  # no client_error
    assert requests["queued_ns"].max() > 0  # the wait was the client's, before sent_ns


@pytest.mark.parametrize(
    ("schedule", "extra", "least"),
    [("concurrency:n=100", (), 100), ("fixed:interval=0.001", ("--max-concurrency", "100"), 100)],
    ids=["closed-loop users", "max-concurrency"],
)
def test_what_cannot_be_capped_is_refused_before_anything_is_written(
    mock_server, tmp_path, schedule, extra, least
) -> None:
    server = mock_server("--profile", "synthetic-fast")
    out = tmp_path / "runs"
    refused = run_limited(server.url, out, schedule, *extra)
    message = one_line_error(refused.stderr, refused.returncode)
    assert message.startswith(
        f"open-files limit (ulimit -n) {LIMIT}: this run needs at least {least + FD_MARGIN} descriptors"
    ), message
    assert f"`ulimit -n {least + FD_MARGIN}`" in message
    assert not out.exists() or not any(out.iterdir())  # no partial run folder
