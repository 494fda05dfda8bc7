"""`NativeServer` and `joulebench serve vllm|tgi|transformers` with stand-in servers that behave like the
real processes.

vLLM cannot run here, so `fake_vllm/` holds a `vllm` package whose `python -m
vllm.entrypoints.openai.api_server` takes vLLM's command line and serves through a child process
running the real mock server, as vLLM serves through its engine-core process. It is put on
PYTHONPATH, as the GPU machine's unpacked vLLM is. TGI gets a stand-in `text-generation-launcher`,
transformers a stand-in `transformers` program (with a `transformers` package that only has a version).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fake_transformers import fake_transformers
from joulebench_testkit import alive, busy_port, free_port

from foundation.errors import InputError
from harness.cli import main
from harness.deploy.health import ServerError
from harness.deploy.native import NativeServer, package_version, tgi_spec, transformers_spec, vllm_spec

FAKE_VLLM = Path(__file__).parent / "fake_vllm"
REPO = Path(__file__).resolve().parents[3]

FAKE_TGI_LAUNCHER = """#!{python}
# Stand-in for TGI's text-generation-launcher: TGI's flags, serving through a child (the mock server).
import argparse, signal, subprocess, sys
p = argparse.ArgumentParser()
p.add_argument("--model-id", required=True)
p.add_argument("--hostname", default="0.0.0.0")
p.add_argument("--port", type=int, default=3000)
args, others = p.parse_known_args()
print(f"fake TGI launcher: model-id={{args.model_id}} flags={{others}}", flush=True)
child = subprocess.Popen([sys.executable, "-m", "harness", "mock-server", "--host", args.hostname,
                          "--port", str(args.port)])
stopping = []
def stop(signum, frame):  # no child.wait() here: it would deadlock with the wait it interrupted
    stopping.append(signum); child.terminate()
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
code = child.wait()
sys.exit(0 if stopping else code)
"""


def fake_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(FAKE_VLLM), "FAKE_VLLM_PIDS": str(tmp_path / "pids"), **extra}


def pids(tmp_path: Path) -> list[int]:
    return [int(p) for p in (tmp_path / "pids").read_text().split()]


def test_vllm_starts_serves_records_and_stops_cleanly(tmp_path):
    port = free_port()
    flags = ["--dtype", "bfloat16", "--api-key", "sk-secret", "--enforce-eager"]
    spec = vllm_spec(
        "/models/llama-test",
        port=port,
        extra_args=flags,
        env=fake_env(tmp_path, VLLM_USE_FLASHINFER_SAMPLER="0"),
    )
    out = tmp_path / "run"
    with NativeServer(spec, out_dir=out, health_timeout_s=60, grace_s=20) as server:
        assert httpx.get(f"{server.base_url}/v1/models", timeout=10).status_code == 200
        running = pids(tmp_path)
        assert len(running) == 2 and all(alive(pid) for pid in running)
        info = json.loads((out / "server.json").read_text())
        assert info == server.describe()
        assert info["kind"] == "vllm" and info["launcher"] == "native"
        assert info["argv"][1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
        assert info["flags"]["--model"] == "/models/llama-test"
        assert info["flags"]["--port"] == str(port)
        assert info["flags"]["--dtype"] == "bfloat16" and info["flags"]["--enforce-eager"] is True
        assert info["flags"]["--api-key"] == "<redacted>" and "sk-secret" not in json.dumps(info)
        assert info["env"]["VLLM_USE_FLASHINFER_SAMPLER"] == "0"
        assert info["version"] and info["server"]["source"] in ("/version", "/info")
        assert 0 < info["healthy_after_s"] < 60
        assert info["started"]["epoch_ns"] > 0
    assert not any(alive(pid) for pid in running), "no process of the server may outlive it"
    info = json.loads((out / "server.json").read_text())
    assert info["exit_code"] == 0 and info["stop"] == "stopped"
    assert info["stopped"]["mono_ns"] > info["started"]["mono_ns"]
    log = (out / "server.log").read_text()
    assert "fake vLLM: model=/models/llama-test" in log and "sampler=0" in log
    assert "shutting down" in log  # it got the stop signal, not a kill


def test_server_that_exits_during_startup_fails_fast_with_its_last_log_line(tmp_path):
    spec = vllm_spec("/models/x", port=free_port(), env=fake_env(tmp_path, FAKE_VLLM_EXIT="3"))
    start = time.monotonic()
    server = NativeServer(spec, out_dir=tmp_path / "run", health_timeout_s=60)
    with pytest.raises(ServerError, match=r"exited with code 3 .*cannot start \(FAKE_VLLM_EXIT\)"), server:
        pass
    assert time.monotonic() - start < 30
    assert json.loads((tmp_path / "run" / "server.json").read_text())["exit_code"] == 3


def test_hung_shutdown_is_killed_after_the_grace_period(tmp_path):
    spec = vllm_spec("/models/x", port=free_port(), env=fake_env(tmp_path, FAKE_VLLM_HANG_ON_TERM="1"))
    server = NativeServer(spec, out_dir=tmp_path / "run", health_timeout_s=60, grace_s=1)
    with server:
        running = pids(tmp_path)
        start = time.monotonic()
    assert 1 <= time.monotonic() - start < 15
    assert server.describe()["stop"] == "killed after grace period"
    assert server.describe()["exit_code"] == -signal.SIGKILL
    assert not any(alive(pid) for pid in running)


def test_a_stray_worker_that_ignores_sigterm_is_not_left_behind(tmp_path):
    spec = vllm_spec("/models/x", port=free_port(), env=fake_env(tmp_path, FAKE_VLLM_STRAY="1"))
    with NativeServer(spec, out_dir=tmp_path / "run", health_timeout_s=60, grace_s=1) as server:
        api, engine, stray = pids(tmp_path)
    assert not alive(stray), "the stray worker (ignores SIGTERM) must have been killed"
    assert not alive(api) and not alive(engine)
    assert server.describe()["stop"] == "killed after grace period"  # the stray kept the group alive


def test_never_healthy_times_out_and_cleans_up(tmp_path):
    # The server listens on another port than the one we watch (the last --port wins in argparse).
    spec = vllm_spec(
        "/models/x", port=free_port(), extra_args=["--port", str(free_port())], env=fake_env(tmp_path)
    )
    server = NativeServer(spec, out_dir=tmp_path / "run", health_timeout_s=3, grace_s=10)
    with pytest.raises(ServerError, match="not healthy after 3 s"), server:
        pass
    assert not any(alive(pid) for pid in pids(tmp_path))


def test_an_unwritable_run_folder_is_refused_before_anything_starts(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the run folder would go")
    spec = vllm_spec("/models/x", port=free_port(), env=fake_env(tmp_path))
    server = NativeServer(spec, out_dir=blocker / "run")
    with pytest.raises(InputError, match=r"server\.log: cannot write the server log"):
        server.start()
    assert server.proc is None


def test_port_already_in_use_is_refused(tmp_path):
    with busy_port() as port:
        spec = vllm_spec("/models/x", port=port, env=fake_env(tmp_path))
        with pytest.raises(InputError, match="already in use"):
            NativeServer(spec, out_dir=tmp_path / "run").start()
    assert not (tmp_path / "pids").exists()


def test_tgi_launcher(tmp_path):
    launcher = tmp_path / "bin" / "text-generation-launcher"
    launcher.parent.mkdir()
    launcher.write_text(FAKE_TGI_LAUNCHER.format(python=sys.executable))
    launcher.chmod(0o755)
    with pytest.raises(InputError, match="not found on PATH"):
        tgi_spec("/models/x", launcher="no-such-text-generation-launcher")
    spec = tgi_spec(
        "/models/tgi-test", port=free_port(), extra_args=["--max-batch-size", "8"], launcher=str(launcher)
    )
    with NativeServer(spec, out_dir=tmp_path / "run", health_timeout_s=60, grace_s=20) as server:
        assert httpx.get(f"{server.base_url}/info", timeout=10).status_code == 200
        info = server.describe()
    assert info["kind"] == "tgi" and info["flags"]["--model-id"] == "/models/tgi-test"
    assert info["flags"]["--max-batch-size"] == "8"
    assert server.describe()["exit_code"] == 0
    assert "fake TGI launcher: model-id=/models/tgi-test" in (tmp_path / "run" / "server.log").read_text()


def test_transformers_serve(tmp_path):
    program, env = fake_transformers(tmp_path)
    with pytest.raises(InputError, match="--executable: 'no-such-transformers' not found on PATH"):
        transformers_spec("/models/x", executable="no-such-transformers")
    spec = transformers_spec(
        "/models/tf-test", port=free_port(), extra_args=["--dtype", "bfloat16"], executable=str(program),
        env=env,
    )  # fmt: skip
    assert spec.argv[1:3] == ("serve", "/models/tf-test")
    with NativeServer(spec, out_dir=tmp_path / "run", health_timeout_s=60, grace_s=20) as server:
        assert httpx.get(f"{server.base_url}/version", timeout=10).status_code == 404
        info = server.describe()
    # No version route: the version is the package's that the program's own interpreter imports.
    assert info["version"] == "5.17.0" and info["server"]["source"] == "transformers.__version__"
    assert info["kind"] == "transformers" and info["flags"]["_positional"] == ["/models/tf-test"]
    assert info["flags"]["--continuous-batching"] is True and info["flags"]["--dtype"] == "bfloat16"
    assert server.describe()["exit_code"] == 0
    log = (tmp_path / "run" / "server.log").read_text()
    assert "fake transformers serve: model=/models/tf-test cb=True flags=['--dtype', 'bfloat16']" in log
    plain = transformers_spec("/models/x", continuous_batching=False, executable=str(program))
    assert "--continuous-batching" not in plain.argv


def test_package_version_is_read_with_the_programs_own_interpreter(tmp_path):
    program, env = fake_transformers(tmp_path)
    assert package_version(str(program), "transformers", {**os.environ, **env}) == {
        "version": "5.17.0", "source": "transformers.__version__"
    }  # fmt: skip
    # Without that package importable, or without a `#!` line, it cannot be told: None, not a guess.
    assert package_version(str(program), "no_such_package_xyz", dict(os.environ)) == {"version": None}
    trampoline = tmp_path / "trampoline"  # pip's for long interpreter paths: never run as Python code
    trampoline.write_text('#!/bin/sh\nexec "/a long/path/python3" "$0" "$@"\n')
    assert package_version(str(trampoline), "transformers", {**os.environ, **env}) == {"version": None}
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF")
    assert package_version(str(binary), "transformers", {**os.environ, **env}) == {"version": None}


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_interrupted(tmp_path, stop_signal):
    port, out = free_port(), tmp_path / "run"
    command = [
        sys.executable, "-m", "harness", "serve", "vllm", "--model", "/models/cli-test", "--port", str(port),
        "--env", f"PYTHONPATH={FAKE_VLLM}", "--env", f"FAKE_VLLM_PIDS={tmp_path / 'pids'}",
        "--env", "VLLM_USE_FLASHINFER_SAMPLER=0", "--out", str(out), "--grace", "20",
        "--max-model-len", "4096", "--enforce-eager",
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = proc.stdout.readline()
        assert f"healthy at http://127.0.0.1:{port}" in ready, ready + proc.stderr.read()
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).status_code == 200
        running = pids(tmp_path)
        proc.send_signal(stop_signal)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "vllm stopped (stopped)" in stdout
    assert not any(alive(pid) for pid in running)
    info = json.loads((out / "server.json").read_text())
    assert info["flags"]["--max-model-len"] == "4096" and info["flags"]["--enforce-eager"] is True


@pytest.mark.slow
def test_cli_second_interrupt_skips_the_grace_period(tmp_path):
    port = free_port()
    command = [
        sys.executable, "-m", "harness", "serve", "vllm", "--model", "m", "--port", str(port),
        "--grace", "120", "--env", f"PYTHONPATH={FAKE_VLLM}", "--env", "FAKE_VLLM_HANG_ON_TERM=1",
        "--env", f"FAKE_VLLM_PIDS={tmp_path / 'pids'}", "--out", str(tmp_path / "run"),
    ]  # fmt: skip
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "healthy at" in proc.stdout.readline()
        running = pids(tmp_path)
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - start < 20, "the second Ctrl-C must not wait for the 120 s grace period"
    assert "killed after grace period" in stdout
    assert not any(alive(pid) for pid in running)


def test_cli_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = [
        (["serve", "vllm", "--model", "m", "--env", "NOEQUALS"], "--env: 'NOEQUALS' is not KEY=VALUE"),
        (["serve", "tgi", "--model", "m", "--launcher", "absent"], "--launcher: 'absent' not found on PATH"),
        (["serve", "vllm", "--model", "m", "--port", "70000"], "--port: 70000 is not a TCP port"),
        (
            ["serve", "transformers", "--model", "m", "--executable", "absent"],
            "--executable: 'absent' not found on PATH",
        ),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("joulebench: error: " + message) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_cli_startup_failure_exits_1_with_one_line(tmp_path, capsys):
    args = ["serve", "vllm", "--model", "m", "--port", str(free_port()), "--env", f"PYTHONPATH={FAKE_VLLM}",
            "--env", "FAKE_VLLM_EXIT=5", "--out", str(tmp_path / "run")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("joulebench: error: vllm server exited with code 5")


def test_vllm_python_defaults_to_this_interpreter():
    spec = vllm_spec("m")
    assert spec.argv[0] == sys.executable and spec.port == 8000 and spec.host == "127.0.0.1"
    assert os.path.basename(vllm_spec("m", python="python3").argv[0]) == "python3"
