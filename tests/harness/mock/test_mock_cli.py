"""`joulebench mock-server`: start-up protocol, bad flags, and the issue's acceptance commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
from joulebench_testkit import REPO, busy_port, joulebench_argv, require_tool, run_joulebench, stop_process

from harness.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    return run_joulebench("mock-server", *args, timeout=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "no-such-profile"], "--profile: 'no-such-profile' is neither a built-in profile"),
        (["--set", "scheduler.max_num_seqs=0"], "scheduler.max_num_seqs"),
        (["--set", "nonsense"], "--set 'nonsense': expected SECTION.FIELD=VALUE"),
        (["--set", "gpu.power_limit_w=-3"], "gpu.power_limit_w"),
        (["--flavour", "sglang"], "--flavour: expected 'vllm' or 'tgi'"),
        (["--error-status", "404", "--error-rate", "0.1"], "error_statuses"),
        (["--model-name", " "], "--model-name: must not be empty"),
        (["--seed", "-1"], "Invalid value for '--seed'"),
        (["--ready-file", "/nonexistent-folder/ready.json"], "--ready-file /nonexistent-folder/ready.json"),
        (["--ready-file", "/"], "--ready-file /: is a folder"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["mock-server", *args, "--port", "0"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert err.startswith("joulebench: error: ") and err.count("\n") == 1
    assert message in err and not out


def test_port_in_use_is_a_clean_error():  # as a process: the exit status and stderr a user sees
    with busy_port() as port:
        result = run("--port", str(port))
    assert result.returncode == 2 and "cannot bind" in result.stderr and result.stderr.count("\n") == 1


def test_bad_profile_file_names_the_file_and_field(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"schema_version": 1, "name": "x"}))
    result = run("--profile", str(bad), "--port", "0")
    assert result.returncode == 2 and str(bad) in result.stderr and "gpu" in result.stderr


def test_help_documents_every_flag():
    result = run("--help")
    assert result.returncode == 0
    for flag in (
        "--host",
        "--port",
        "--profile",
        "--seed",
        "--speed",
        "--model-name",
        "--flavour",
        "--tokenizer",
        "--set",
        "--ready-file",
        "--error-rate",
        "--rate-limit-rate",
        "--spike-rate",
        "--stall-rate",
        "--disconnect-rate",
        "--malformed-rate",
        "--no-usage-rate",
        "--linebreak-rate",
    ):
        assert flag in result.stdout, flag


def test_ready_file_and_sigterm(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        joulebench_argv("mock-server", "--port", "0", "--ready-file", str(ready)),
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        doc = json.loads(ready.read_text())
        assert doc["url"] == url and doc["pid"] == proc.pid and url.endswith(f":{doc['port']}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not ready.exists()
    finally:
        stop_process(proc)


def test_acceptance_commands_from_the_issue():
    require_tool("curl", "apt-get install curl")
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 8011)) == 0:
            pytest.skip("port 8011 (the issue's exact command) is in use on this machine")
    proc = subprocess.Popen(
        "exec joulebench mock-server --port 8011 --seed 1",
        shell=True,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        executable="/bin/bash",
        env=_venv_env(),
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "http://127.0.0.1:8011"

        def sh(command: str) -> str:
            return subprocess.run(
                command, shell=True, capture_output=True, text=True, check=True, timeout=60
            ).stdout

        models = json.loads(sh("curl -s localhost:8011/v1/models"))
        assert models["data"][0]["id"] == "mock"
        stream = sh(
            "curl -sN localhost:8011/v1/chat/completions -H 'content-type: application/json' "
            """-d '{"model":"mock","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"""
            """"stream":true,"stream_options":{"include_usage":true}}'"""
        )
        data = [line[6:] for line in stream.split("\n") if line.startswith("data: ")]
        assert data[-1] == "[DONE]" and json.loads(data[-2])["usage"]["completion_tokens"] <= 16
        generate = json.loads(
            sh(
                "curl -s localhost:8011/generate -H 'content-type: application/json' "
                """-d '{"inputs":"hi","parameters":{"max_new_tokens":8,"details":true}}'"""
            )
        )
        assert generate["details"]["generated_tokens"] == len(generate["details"]["tokens"]) <= 8
        running = sh("curl -s localhost:8011/metrics | grep '^vllm:num_requests_running'")
        assert running.startswith('vllm:num_requests_running{engine="0",model_name="mock"} ')
    finally:
        stop_process(proc)


def _venv_env() -> dict:
    """PATH with this interpreter's bin folder first, so `joulebench` is the venv's console script."""
    return {
        **os.environ,
        "PATH": f"{REPO / '.venv' / 'bin'}:{sys.executable.rsplit('/', 1)[0]}:{os.environ['PATH']}",
    }
