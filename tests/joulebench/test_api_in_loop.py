"""joulebench.run where an event loop already runs in the calling thread, as in every Jupyter cell (the
kernel's loop runs the cell): called plainly it blocks and returns the result, awaited (`run_async`) it
lets the loop carry on. Bad input raises the same InputError from there, before anything starts; an
interrupt, which cannot reach a run on its worker thread, is raised once the run has ended."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from joulebench_testkit import run_dirs

import joulebench

pytestmark = pytest.mark.slow


def test_run_inside_a_running_loop(tmp_path: Path, tiny: dict[str, Any], mock_server: Any) -> None:
    # The awaited run goes to a mock server without power: a run with latency only, no summary.
    server = mock_server("--profile", "synthetic-fast")

    async def cell() -> tuple[joulebench.RunResult, joulebench.RunResult, int]:
        blocking = joulebench.run(out=tmp_path / "runs", **tiny)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        awaited = await joulebench.run_async(server.url, out=tmp_path / "runs", **{**tiny, "idle": 0})
        ticking.cancel()
        # strict: an error flag fails the call (a bound no real client meets: 1 ns of lateness).
        with pytest.raises(joulebench.StrictFailure, match="an error flag under strict") as failed:
            await joulebench.run_async(
                server.url,
                out=tmp_path / "runs",
                **{**tiny, "idle": 0, "strict": True, "max_lateness_ms": 1e-6},
            )
        assert failed.value.result.status == 1 and failed.value.result.arms["ok"].tolist() == [3]
        return blocking, awaited, ticks

    blocking, awaited, ticks = asyncio.run(cell())
    assert blocking.status == 0 and blocking.summary is not None
    assert blocking.arms["ok"].tolist() == [3] and blocking.power is not None
    assert awaited.summary is None and awaited.power is None  # no power source given
    assert awaited.arms["ok"].tolist() == [3] and awaited.arms["j_per_request_all_in"].isna().all()
    assert awaited.manifest["target"]["url"] == server.url
    assert ticks > 0  # the loop ran on while the awaited run went on (a blocking call would leave 0)


def test_bad_input_inside_a_running_loop(tmp_path: Path, tiny: dict[str, Any]) -> None:
    async def cell(**bad: Any) -> None:
        joulebench.run(out=tmp_path / "runs", **{**tiny, **bad})

    # Checked in the caller's thread (the flags), or on the worker before anything starts (the plan).
    with pytest.raises(joulebench.InputError, match=r"^--idle: expected 0 to 3600 seconds, got -1\.0$"):
        asyncio.run(cell(idle=-1))
    with pytest.raises(joulebench.InputError, match=r"^--schedule 'nope': "):
        asyncio.run(cell(schedules=["nope"]))
    assert not (tmp_path / "runs").exists()


# Jupyter's interrupt, as the kernel delivers it: SIGINT to the process, KeyboardInterrupt in the main
# thread (Python's default handler; asyncio.run would install its own), which is waiting for the run.
INTERRUPTED_CELL = """
import asyncio, io, os, signal, sys, threading, time
from pathlib import Path
from rich.console import Console
import joulebench

out = Path(sys.argv[1])
# A kernel installs its SIGINT handler; a Python started with SIGINT ignored (as a pytest-xdist worker's
# children are) would not raise KeyboardInterrupt on its own.
signal.signal(signal.SIGINT, signal.default_int_handler)

def interrupt_once_sending():
    deadline = time.monotonic() + 60
    while not any('"sent"' in p.read_text() for p in out.glob("*/requests.jsonl")):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGINT)

async def cell():
    threading.Thread(target=interrupt_once_sending, daemon=True).start()
    joulebench.run(out=out, schedules=["fixed:interval=0.1"], n=5, max_tokens=4, idle=0.2, warmup=0,
                   progress=False, console=Console(file=io.StringIO()))
    print("the run ended and no interrupt came")

loop = asyncio.new_event_loop()
try:
    loop.run_until_complete(cell())
except KeyboardInterrupt:
    print("KeyboardInterrupt after", ", ".join(sorted(p.name for p in next(out.glob("2*")).iterdir())))
"""


def test_an_interrupt_waits_for_the_run_then_raises(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_CELL, str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "the run is on a worker thread" in done.stderr, done.stderr[-3000:]
    # Raised only once the run had ended, its folder whole and its servers stopped.
    assert done.stdout.startswith("KeyboardInterrupt after "), done.stdout + done.stderr[-3000:]
    assert "requests.parquet" in done.stdout and "summary.json" in done.stdout, done.stdout
    (folder,) = run_dirs(tmp_path / "runs")
    result = joulebench.open_run(folder)
    assert result.arms["ok"].tolist() == [5] and result.summary is not None
    processes = result.manifest["embedded"]["processes"].values()
    assert [p["exit_code"] for p in processes] == [0, 0]
