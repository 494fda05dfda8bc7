"""The compose target against a stand-in `docker` CLI (no Docker engine here).

The stand-in takes `docker compose -f FILE --profile P up -d --wait` and starts the real mock server
detached, as compose would start the profile's containers, and `... down` stops it by the PID it
recorded; every call is logged, so the test sees exactly what joulebench asked compose to do.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from joulebench_testkit import alive, free_port, run_main

from harness.runfolder.experiment_files import ExperimentFolder

FAKE_DOCKER = """#!{python}
import json, os, signal, subprocess, sys, time
state = os.environ["FAKE_DOCKER_STATE"]
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:1] != ["compose"]:
    sys.exit("fake docker: only compose")
pid_file = os.path.join(state, "pid")
if "up" in args:
    argv = [sys.executable, "-m", "harness", "mock-server", "--port", os.environ["FAKE_PORT"]]
    mock = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    open(pid_file, "w").write(str(mock.pid))
elif "down" in args:
    pid = int(open(pid_file).read())
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
"""


def test_compose_profile_is_brought_up_once_and_down_after(tmp_path, monkeypatch, capsys) -> None:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    port = free_port()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))
    monkeypatch.setenv("FAKE_PORT", str(port))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[3]))
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"target: {{compose: mock, compose_file: deploy.yml, url: 'http://127.0.0.1:{port}', "
        "health_timeout_s: 60}\n"
        "plan: {prompts: synthetic, n: 2, max_tokens: 4, ignore_eos: true}\n"
        "arms: [fixed:interval=0.1, 'bursty:size=2,intra=0,gap=1']\nrepeats: 2\ncooldown_s: 0\n"
        # Sequential stopping has nothing to narrow without energy: it must not add repeats.
        "stop: {half_width: 0.001, max_repeats: 4}\n"
        "run: {warmup: 0}\n"
    )
    status = run_main(["experiment", "run", str(exp), "-o", str(tmp_path / "out")])
    assert status == 0, capsys.readouterr().err
    calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
    assert calls == [
        ["compose", "-f", "deploy.yml", "--profile", "mock", "up", "-d", "--wait"],
        ["compose", "-f", "deploy.yml", "--profile", "mock", "down"],
    ]
    pid = int((state / "pid").read_text())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    (folder,) = (tmp_path / "out").iterdir()
    cells = ExperimentFolder(folder).read_cells()
    assert len(cells) == 4 and set(cells["status"]) == {"done"}
    assert set(cells["ok"]) == {2}  # requests only: no power source, so no energy figures
    assert cells["j_per_request_all_in"].isna().all()
    # Said where the figures are shown: an empty verdict must not read as "no difference".
    assert "4 of 4 done cells have no" in (folder / "report.html").read_text()


def test_compose_failure_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, capsys) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'no such service: vllm' >&2\nexit 1\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "target: {compose: vllm, url: 'http://127.0.0.1:9'}\n"
        "plan: {prompts: synthetic, n: 2, max_tokens: 4}\narms: [fixed:interval=0.1]\n"
    )
    status = run_main(["experiment", "run", str(exp), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert err[0] == "joulebench: error: target.compose: docker compose up failed (1): no such service: vllm"
    assert not any((tmp_path / "out").iterdir())
