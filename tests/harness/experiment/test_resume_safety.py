"""What keeps an experiment folder consistent when its process is stopped, dies, or has company.

- SIGTERM stops an experiment as Ctrl-C does: exit 130, the embedded target's processes gone, no cell
  left "running", and a resume finishes it.
- A cell whose run folder was reported but whose row was not yet written (the process died in between)
  is adopted on resume, never measured again.
- Two processes never run one folder's cells: the second is refused with the owner's PID.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from joulebench_testkit import REPO, alive, one_line_error, run_main

from harness.runfolder.experiment_files import ExperimentFolder

YAML = (
    "target: embedded\nplan: {prompts: synthetic, n: 3, max_tokens: 4, ignore_eos: true}\n"
    "arms: [fixed:interval=0.2, 'bursty:size=3,intra=0,gap=1']\nrepeats: 2\ncooldown_s: 0.3\n"
    "cell_reports: false\n"
)


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            kids = [int(k) for k in task.read_text().split()]
            found += kids
            frontier += kids
    return found


@pytest.mark.slow  # two experiments on the embedded mock, about 25 s
def test_sigterm_stops_cleanly_and_resume_adopts_a_reported_cell(tmp_path, capsys) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(YAML)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "harness", "experiment", "run", str(exp), "-o", str(out)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    done = 0
    while done < 1:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        folders = list(out.glob("*/cells.parquet")) if out.exists() else []
        if folders:  # replaced atomically, read through one open file: always whole
            done = int((ExperimentFolder(folders[0].parent).read_cells()["status"] == "done").sum())
        time.sleep(0.2)
    children = _descendants(proc.pid)
    assert children  # the mock server and the sidecar
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, proc.stderr.read() if proc.stderr else ""
    time.sleep(0.5)
    assert not [pid for pid in children if alive(pid)]
    (path,) = out.iterdir()
    folder = ExperimentFolder(path)
    cells = folder.read_cells()
    assert "running" not in set(cells["status"])

    # The process dies after a cell's report, before its row says so: resume must adopt it.
    first = cells.index[cells["status"] == "done"][0]
    before = cells.loc[first].to_dict()
    cells.loc[first, "status"] = "running"
    folder.write_cells(cells)
    assert run_main(["experiment", "resume", str(path)]) == 0, capsys.readouterr().err
    after = ExperimentFolder(path).read_cells()
    assert set(after["status"]) == {"done"} and len(after) == 4
    assert after.loc[first, "j_per_request_all_in"] == before["j_per_request_all_in"]
    assert not (path / "abandoned" / str(before["run_id"])).exists()
    assert "cell 0:" in (path / "cells.log").read_text()  # each cell's own output is kept


def test_a_second_process_is_refused(tmp_path, capsys) -> None:
    folder = ExperimentFolder(tmp_path)
    (tmp_path / folder.SPEC).write_text(YAML)
    with folder.lock():
        status = run_main(["experiment", "resume", str(tmp_path)])
    message = one_line_error(capsys.readouterr().err, status)
    assert message == f"{tmp_path}: already being run by PID {__import__('os').getpid()}"
