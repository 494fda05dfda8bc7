"""joulebench.run from plain Python (the main thread, as a script calls it) on the embedded default, and
open_run on the folder it made: the result holds what the folder holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import joulebench
from harness.cli.export_tables import ARM_COLUMNS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory, tiny: dict[str, Any]) -> joulebench.RunResult:
    return joulebench.run(out=tmp_path_factory.mktemp("api") / "runs", **tiny)


def test_the_result_is_the_run_folder(measured: joulebench.RunResult) -> None:
    folder = measured.path
    assert measured.status == 0
    assert folder.parent.name == "runs" and (folder / "manifest.json").is_file()
    assert measured.summary == json.loads((folder / "summary.json").read_text())
    assert measured.run_id == measured.summary["run_id"] == folder.name
    assert measured.report_html == folder / "report.html"
    assert measured.flags == measured.summary["flags"]
    # The manifest records the call, not the interpreter's own command line (pytest's here).
    command = measured.manifest["command_line"]
    assert command[0] == "joulebench.run" and "n=3" in command and "idle=0.2" in command


def test_the_tables(measured: joulebench.RunResult) -> None:
    requests = measured.requests
    planned = requests[~requests["warmup"]]
    assert len(planned) == 3 and set(planned["status"]) == {"ok"}
    assert planned["energy_j"].notna().all() and (planned["energy_j"] > 0).all()
    assert list(measured.arms.columns) == list(ARM_COLUMNS)
    (arm,) = measured.arms.to_dict("records")
    block = measured.summary["arms"][0]
    assert arm["arm"] == block["name"] == "fixed" and arm["ok"] == block["requests"]["ok"] == 3
    assert arm["j_per_request_attributed"] == pytest.approx(block["j_per_request"]["mean"])
    power = measured.power
    assert power is not None and list(power.columns) == ["gpu", "t_ns", "energy_j", "power_w"]
    assert power["t_ns"].is_monotonic_increasing and power["energy_j"].is_monotonic_increasing
    # The run's measured energy is a stretch of this series.
    assert power["energy_j"].iloc[-1] - power["energy_j"].iloc[0] >= measured.summary["run"]["energy_j_total"]


def test_notebook_display(measured: joulebench.RunResult) -> None:
    assert measured.run_id in repr(measured)
    page = measured._repr_html_()
    assert measured.run_id in page and "fixed" in page and "report.html" in page
    for flag in measured.flags:
        assert flag["code"] in page


def test_open_run_reads_the_same(measured: joulebench.RunResult) -> None:
    for path in (measured.path, measured.path.parent / "latest", str(measured.path)):
        opened = joulebench.open_run(path)
        assert opened.run_id == measured.run_id and opened.status is None
        assert opened.summary == measured.summary
        pd.testing.assert_frame_equal(opened.requests, measured.requests)
        pd.testing.assert_frame_equal(opened.arms, measured.arms)
        assert opened.power is not None and measured.power is not None
        pd.testing.assert_frame_equal(opened.power, measured.power)


def test_open_run_refuses_other_folders(tmp_path: Path, measured: joulebench.RunResult) -> None:
    with pytest.raises(joulebench.InputError, match="not a joulebench run folder"):
        joulebench.open_run(tmp_path)
    (tmp_path / "experiment.yaml").write_text("name: x\n")
    with pytest.raises(joulebench.InputError, match=r"an experiment folder .*open_experiment"):
        joulebench.open_run(tmp_path)
    with pytest.raises(joulebench.InputError, match=r"a run folder .*open_run"):
        joulebench.open_experiment(measured.path)
    with pytest.raises(joulebench.InputError, match="no such folder"):
        joulebench.open_run(tmp_path / "missing")


def test_the_path_is_absolute(measured: joulebench.RunResult, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(measured.path.parent)
    opened = joulebench.open_run(measured.path.name)
    monkeypatch.chdir(measured.path.anchor)  # a later chdir leaves it pointing at the run folder
    assert opened.path == measured.path and opened.path.is_absolute() and opened.path.is_dir()
