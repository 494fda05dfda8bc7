"""No API key reaches a run folder, even from a server that echoes it back: in response headers
(named like credentials or not, allow-listed or not), a cookie, the generated text, an error message.

`echo_server.py` is that server, a real process on loopback; `joulebench run --plan` runs against it
with the key in the variable named by `--api-key-env`, streaming and not, and every byte of every
file of the run folder is searched for the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import run_dirs, run_joulebench, stop_process

from harness.runfolder import RunFolder

ECHO_SERVER = Path(__file__).with_name("echo_server.py")
SECRET = "sk-echo-s3cret-0123456789"


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(ECHO_SERVER)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read() if process.stderr else url
        yield url
    finally:
        stop_process(process)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_an_echoed_api_key_never_reaches_the_run_folder(echo_url: str, tmp_path: Path, stream: bool) -> None:
    built = run_joulebench(
        "plan", "build", "--prompts", "synthetic", "--schedule", "fixed:interval=0.02", "--n", "6",
        "--max-tokens", "4", "--out", "plan.parquet", cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    result = run_joulebench(
        "run", "--target", echo_url, "--plan", "plan.parquet", "--api-key-env", "ECHO_TEST_KEY",
        "--out", "runs", *([] if stream else ["--no-stream"]), cwd=tmp_path, env={"ECHO_TEST_KEY": SECRET},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    (run_dir,) = run_dirs(tmp_path / "runs")
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"requests.jsonl", "requests.parquet", "manifest.json"} <= {p.name for p in files}
    assert [p.name for p in files if SECRET.encode() in p.read_bytes()] == []

    requests = pd.read_parquet(RunFolder.open(run_dir).requests_path)
    measured = requests[~requests["warmup"]]
    assert len(measured) == 6 and set(measured["status"]) == {"ok", "http_error"}, measured["error"]
    assert (measured["status"] == "http_error").sum() >= 1  # the server echoed the key in its error...
    errors = measured.loc[measured["status"] == "http_error", "error"]
    assert errors.str.contains("Incorrect API key provided: ***", regex=False).all()  # ...redacted
    for timing in measured["server_timing"]:  # only the allow-listed headers, the key redacted
        assert json.loads(timing) == {
            "x-request-id": "req-***",
            "x-queue-time": 3,
            "server-timing": "app;dur=1.5",
        }
