"""`joulebench sidecar`: its flags, and bad flags as one-line errors (exit 2, no traceback)."""

from __future__ import annotations

import sys

import pytest
from fake_pynvml import FakeGpu, FakeNvml
from joulebench_testkit import ERROR_PREFIX, busy_port, free_port, one_line_error, run_joulebench, run_main


def sidecar_error(args: list[str]) -> str:
    """`joulebench sidecar ARGS` as a process: the one-line error's message."""
    result = run_joulebench("sidecar", *args, timeout=60)
    return one_line_error(result.stderr, result.returncode)


def sidecar_error_line(args: list[str], capsys) -> str:
    """The same in this process (so a fake pynvml can stand in): the whole error line."""
    status = run_main(["sidecar", *args])
    return ERROR_PREFIX + one_line_error(capsys.readouterr().err, status)


def test_help_documents_every_flag():
    result = run_joulebench("sidecar", "--help", timeout=60)
    assert result.returncode == 0
    for flag in ("--host", "--port", "--interval", "--gpus", "--backend", "--simulate-from", "--log"):
        assert flag in result.stdout, flag
    assert "9400" in result.stdout and "0.1" in result.stdout


def test_no_nvml_on_this_machine():
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        pass
    else:
        pytest.skip("this machine has NVML")
    message = sidecar_error(["--port", str(free_port())])
    assert message.startswith("--backend nvml: NVML is not available on this machine")
    assert "--backend simulated" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--interval", "0.001"], "--interval: expected 0.01 to 10.0 seconds, got 0.001"),
        (["--interval", "60"], "--interval: expected 0.01 to 10.0 seconds"),
        (["--port", "70000"], "--port: expected 0-65535, got 70000"),
        (["--gpus", "0,a"], "--gpus: expected 'all' or GPU indices like '0,2', got '0,a'"),
        (["--backend", "rocm"], "--backend: expected 'nvml' or 'simulated', got 'rocm'"),
        (["--backend", "simulated"], "--backend simulated: needs --simulate-from URL (the mock server)"),
        (["--simulate-from", "http://127.0.0.1:1"], "--simulate-from: only used with --backend simulated"),
        (
            ["--backend", "simulated", "--simulate-from", "127.0.0.1:8000"],
            "--simulate-from: expected an http(s) URL",
        ),
        (["--backend", "simulated", "--simulate-from", "http://127.0.0.1:9"], "--simulate-from: cannot read"),
        (["--backend", "simulated", "--simulate-from", "http://[::1"], "'http://[::1' is not a valid URL"),
    ],
)
def test_bad_flags(args, expected, capsys):
    # In-process through harness.cli.main, the entry point's own code (the subprocess tests above
    # prove the installed command behaves the same).
    assert expected in sidecar_error_line(args, capsys)


@pytest.fixture
def fake_pynvml_module(monkeypatch):
    """Stand the fake in for the pynvml module itself: the CLI's real code path then finds two GPUs."""
    fake = FakeNvml([FakeGpu("GPU-0"), FakeGpu("GPU-1")])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_unknown_gpu_index(fake_pynvml_module, capsys):
    line = sidecar_error_line(["--gpus", "0,5", "--port", "0"], capsys)
    assert line == "joulebench: error: --gpus: no GPU 5 on this machine (it has: 0, 1)"
    assert fake_pynvml_module.initialized == 0


def test_port_in_use(fake_pynvml_module, capsys):
    with busy_port() as port:
        line = sidecar_error_line(["--host", "127.0.0.1", "--port", str(port)], capsys)
    assert line == f"joulebench: error: --port {port}: 127.0.0.1:{port} is already in use"
    assert fake_pynvml_module.initialized == 0  # NVML released on the way out


def test_log_file_that_cannot_be_opened(fake_pynvml_module, capsys, tmp_path):
    line = sidecar_error_line(["--port", "0", "--log", str(tmp_path / "missing" / "log.jsonl")], capsys)
    assert line.startswith("joulebench: error: --log ") and "cannot open for appending" in line
