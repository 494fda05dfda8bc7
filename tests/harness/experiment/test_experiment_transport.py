"""`transport: auto` in an experiment is decided once, over every arm, so the cells of an open-loop arm
and of a closed-loop arm go out on one transport (decided per cell, the closed-loop cells would take
aiohttp and the open-loop ones the sender: a difference between arms that is not theirs); a resume
keeps the transport its done cells used. On the embedded mock, real processes."""

from __future__ import annotations

import json
import shutil

import pytest
from joulebench_testkit import run_main

from harness.runfolder import RunFolder
from harness.runfolder.experiment_files import ExperimentFolder

pytestmark = pytest.mark.slow

YAML = (
    "target: embedded\nplan: {prompts: synthetic, n: 4, max_tokens: 4, ignore_eos: true}\n"
    "arms: ['fixed:interval=0.1,name=open', 'concurrency:n=2,name=closed']\nrepeats: 1\n"
    "cooldown_s: 0.2\ncell_reports: false\n"
)


def _transports(folder: ExperimentFolder) -> dict[str, tuple[str, str]]:
    cells = folder.read_cells()
    found = {}
    for arm, run_dir in zip(cells["arm"], cells["run_dir"], strict=True):
        options = RunFolder.open(folder.path / run_dir).manifest()["options"]
        found[arm] = (options["transport"], options["transport_reason"])
    return found


def test_every_cell_goes_out_on_one_transport_and_a_resume_keeps_it(tmp_path, capsys) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(YAML)
    out = tmp_path / "out"
    assert run_main(["experiment", "run", str(exp), "-o", str(out)]) == 0, capsys.readouterr().err
    (path,) = out.iterdir()
    folder = ExperimentFolder(path)
    reason = "auto: sender, an open-loop plan to an http:// target with no cap"
    assert _transports(folder) == {"open": ("sender", reason), "closed": ("sender", reason)}

    # As if an older joulebench (aiohttp by default) had run the first cell and stopped before the second.
    cells = folder.read_cells()
    first, second = cells.index[0], cells.index[1]
    manifest_path = folder.path / str(cells.loc[first, "run_dir"]) / RunFolder.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["options"].update(transport="aiohttp", transport_reason=None)
    manifest_path.write_text(json.dumps(manifest))
    shutil.rmtree(folder.path / str(cells.loc[second, "run_dir"]))
    cells.loc[second, "status"] = "pending"
    folder.write_cells(cells)
    assert run_main(["experiment", "resume", str(path)]) == 0, capsys.readouterr().err
    resumed = _transports(folder)
    assert resumed[str(cells.loc[second, "arm"])] == (
        "aiohttp",
        "auto: aiohttp, as the experiment's done cells",
    )
