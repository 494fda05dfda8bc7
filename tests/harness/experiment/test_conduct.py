"""Sequential stopping on the embedded mock (harness/experiment/conduct.py): `stop: {half_width,
max_repeats}` adds repeats while some paired CI is wider than half_width, never beyond max_repeats;
a resume keeps the repeats it added and runs nothing that is done; a table that does not match the
experiment file is refused. The overrides come from `--set`, as a user would give them.
"""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from joulebench_testkit import one_line_error, run_main

from harness.runfolder.experiment_files import ExperimentFolder

pytestmark = pytest.mark.slow

EXPERIMENT = """\
name: stop
target: embedded
plan: {prompts: synthetic, n: 3, max_tokens: 4, ignore_eos: true}
arms:
  - fixed:interval=0.25,name=fixed
  - bursty:size=3,intra=0,gap=1,name=bursty
rates: [8]
repeats: 2
cooldown_s: 0.2
cell_reports: false
"""


def _run(tmp_path, capsys, *args: str) -> tuple[ExperimentFolder, str]:
    exp = tmp_path / "exp.yaml"
    exp.write_text(EXPERIMENT)
    out = tmp_path / "out"
    status = run_main(["experiment", "run", str(exp), "-o", str(out), *args])
    err = capsys.readouterr().err
    assert status == 0, err
    (path,) = out.iterdir()
    return ExperimentFolder(path), err


def _runs(folder: ExperimentFolder) -> list[str]:
    return sorted(p.name for p in folder.runs.iterdir())


def test_tiny_half_width_adds_repeats_up_to_max_repeats_and_resume_keeps_them(tmp_path, capsys) -> None:
    folder, err = _run(tmp_path, capsys, "--set", "stop.half_width=1e-9", "--set", "stop.max_repeats=3")
    assert "sequential stopping: adding repeat 3" in err
    assert "adding repeat 4" not in err
    cells = folder.read_cells()
    assert sorted(cells["repeat"].unique()) == [1, 2, 3]
    assert len(cells) == 6 and set(cells["status"]) == {"done"}
    for repeat in (1, 2, 3):
        assert sorted(cells.loc[cells["repeat"] == repeat, "arm"]) == ["bursty", "fixed"]
    assert _runs(folder) == sorted(cells["run_id"])
    assert folder.spec_data()["stop"] == {"half_width": 1e-9, "max_repeats": 3}
    assert folder.spec_data()["repeats"] == 2
    doc = folder.read_summary()
    assert doc["counts"] == {"total": 6, "done": 6, "pending": 0, "running": 0}
    # Resuming the finished experiment runs nothing: the added repeat stays, no cell runs twice.
    status = run_main(["experiment", "resume", str(folder.path)])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "0 of 6 cells to run" in err and "sequential stopping" not in err
    pd.testing.assert_frame_equal(folder.read_cells(), cells)
    assert _runs(folder) == sorted(cells["run_id"])
    assert not (folder.path / "abandoned").exists()


def test_huge_half_width_stops_at_repeats_and_a_foreign_table_is_refused(tmp_path, capsys) -> None:
    folder, err = _run(tmp_path, capsys, "--set", "stop={half_width: 1e9, max_repeats: 3}")
    assert "sequential stopping" not in err
    cells = folder.read_cells()
    assert sorted(cells["repeat"].unique()) == [1, 2] and len(cells) == 4
    assert set(cells["status"]) == {"done"} and len(_runs(folder)) == 4
    # The folder's experiment.yaml edited so that its design no longer matches the table.
    spec = folder.spec_data()
    spec["arms"] = spec["arms"][::-1]
    (folder.path / folder.SPEC).write_text(yaml.safe_dump(spec, sort_keys=False))
    status = run_main(["experiment", "resume", str(folder.path)])
    # The progress line ("resuming ...: 0 of 4 cells to run") comes first, then the one error line.
    *_, last = capsys.readouterr().err.strip().splitlines()
    message = one_line_error(last, status)
    assert message.startswith(f"{folder.path / folder.CELLS}: cell 0 is arm=")
    assert message.endswith("the table does not belong to this experiment.yaml")
    pd.testing.assert_frame_equal(folder.read_cells(), cells)  # left as it was
