"""`joulebench export`: a real run's requests with their energy and its arms' figures, as CSV and Parquet,
equal to what the run folder says; an experiment's cells; runs without (whole) power; bad input."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from joulebench_testkit import REPO, one_line_error, run_joulebench, run_main
from synth_runs import build_run

from harness.report import report_run
from harness.runfolder import RunFolder
from harness.runfolder.experiment_files import ExperimentFolder
from harness.runfolder.report_files import read_energy

EXPERIMENT = REPO / "docs" / "results" / "arrival-shaping-h200" / "experiment"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A real embedded run (mock server + simulated sidecar), two arms of 6 requests."""
    out = tmp_path_factory.mktemp("runs")
    done = run_joulebench(
        "run", "--n", "6", "--schedule", "fixed:interval=0.2",
        "--schedule", "bursty:size=3,intra=0.01,gap=0.6", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (folder,) = [p for p in out.iterdir() if not p.is_symlink()]
    return folder


def _export(run: Path, out: Path, *flags: str) -> dict[str, pd.DataFrame]:
    assert run_main(["export", str(run), "--out", str(out), *flags]) == 0
    read = pd.read_parquet if "parquet" in flags else pd.read_csv
    return {p.name.removeprefix(run.name + "-").split(".")[0]: read(p) for p in sorted(out.iterdir())}


def test_each_request_comes_with_its_energy(run, tmp_path) -> None:
    tables = _export(run, tmp_path)
    assert sorted(tables) == ["arms", "requests"]
    requests = tables["requests"].set_index("request_id")
    logged = RunFolder.open(run).requests().set_index("request_id")
    energy, _ = read_energy(run)
    assert list(requests.index) == list(logged.index)
    assert list(requests["status"]) == list(logged["status"])
    assert list(requests["first_token_ns"]) == list(logged["first_token_ns"])
    assert "chunk_ns" not in requests and list(requests["chunks"]) == list(logged["chunks"])
    joined = energy.set_index("request_id")["energy_j"].reindex(requests.index)
    assert requests["energy_j"].notna().sum() > 6
    assert requests["energy_j"].equals(joined.astype(float))


def test_each_arm_row_is_the_summarys_figures(run, tmp_path) -> None:
    arms = _export(run, tmp_path)["arms"].set_index("arm")
    summary = json.loads((run / "summary.json").read_text())
    assert list(arms.index) == [b["name"] for b in summary["arms"]] == ["fixed", "bursty"]
    for block in summary["arms"]:
        row = arms.loc[block["name"]]
        assert (row["ok"], row["requests"]) == (block["requests"]["ok"], block["requests"]["total"])
        assert row["j_per_request_all_in"] == pytest.approx(block["all_in"]["j_per_request"], rel=1e-12)
        assert [row["all_in_ci95_low"], row["all_in_ci95_high"]] == pytest.approx(block["all_in"]["ci95"])
        assert row["j_per_request_attributed"] == pytest.approx(block["j_per_request"]["mean"], rel=1e-12)
        assert [row["attributed_ci95_low"], row["attributed_ci95_high"]] == pytest.approx(
            block["j_per_request"]["ci95"]
        )
        split = block["all_in_split"]  # idle apart, with the split's idle clamp
        assert row["j_above_idle_per_request"] == pytest.approx(split["above_idle_j_per_request"])
        assert row["j_idle_per_request"] == pytest.approx(split["idle_j_per_request"])
        for name in ("ttft", "e2e", "user_ttft", "user_e2e"):
            for q in ("p50", "p99"):
                assert row[f"{name}_{q}_s"] == pytest.approx(block["latency_s"][name][q], rel=1e-12)
        assert row["hold_p99_ms"] == block["hold_ms"]["p99"]


def test_parquet_holds_the_same_tables(run, tmp_path) -> None:
    csv = _export(run, tmp_path / "csv")
    parquet = _export(run, tmp_path / "parquet", "--format", "parquet")
    for name in ("requests", "arms"):
        assert len(parquet[name]) == len(csv[name]) > 0
        as_csv = pd.read_csv(io.StringIO(parquet[name].to_csv(index=False)))
        pd.testing.assert_frame_equal(as_csv, csv[name])


def test_an_experiment_folder_exports_its_cells(tmp_path) -> None:
    assert run_main(["export", str(EXPERIMENT), "--out", str(tmp_path), "--format", "parquet"]) == 0
    experiment = ExperimentFolder.open(EXPERIMENT)
    (written,) = tmp_path.iterdir()
    assert written.name == f"{experiment.experiment_id}-cells.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(written), experiment.read_cells(), check_dtype=False)


def test_a_run_without_power_has_latency_and_says_so(tmp_path) -> None:
    run = build_run(tmp_path / "runs", with_power=False)
    tables = _export(run, tmp_path / "out")
    assert tables["requests"]["energy_j"].isna().all() and len(tables["requests"]) == 40
    arms = tables["arms"].set_index("arm")
    assert list(arms["flags"]) == ["no_power", "no_power"]
    assert arms["j_per_request_all_in"].isna().all() and arms["attributed_ci95_low"].isna().all()
    assert list(arms["ttft_p99_s"]) == pytest.approx([0.030, 0.030])  # synthetic: first token at 30 ms


def test_an_arm_with_incomplete_power_has_no_energy_figure_nor_interval(tmp_path) -> None:
    run = build_run(tmp_path / "runs", power_end_s=25.0)  # power ends inside the second arm, bursty
    report_run(run, html=False)
    arms = _export(run, tmp_path / "out")["arms"].set_index("arm")
    assert "power_incomplete" in arms.loc["bursty", "flags"]
    bursty = arms.loc["bursty", ["j_per_request_all_in", "all_in_ci95_low", "j_per_request_attributed",
                                 "attributed_ci95_low", "attributed_ci95_high"]]  # fmt: skip
    assert bursty.isna().all()
    assert not math.isnan(arms.loc["fixed", "attributed_ci95_low"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "{missing}: no such folder"),
        (["{plain}"], "{plain}: not a joulebench run folder (manifest.json and plan.parquet) or experiment "
                      "folder (experiment.yaml)"),
        (["{run}", "--format", "xlsx"], "--format 'xlsx': expected one of csv, parquet"),
        (["{run}", "--out", "{file}"], "--out {file}: cannot create the folder ({file} is not a folder)"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, capsys) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "file").write_text("")
    places = {name: str(tmp_path / name) for name in ("missing", "plain", "file")}
    places["run"] = str(build_run(tmp_path / "runs", with_power=False))
    out = tmp_path / "out"
    given = [a.format(**places) for a in args]
    status = run_main(["export", *given, *([] if "--out" in args else ["--out", str(out)])])
    assert one_line_error(capsys.readouterr().err, status) == message.format(**places)
    assert not out.exists() or not any(out.iterdir())


def test_a_damaged_summary_writes_no_table(tmp_path, capsys) -> None:
    """The requests table is fine, the arms' is not: neither file is written."""
    run = build_run(tmp_path / "runs")
    report_run(run, html=False)
    (run / "summary.json").write_text("{")
    status = run_main(["export", str(run), "--out", str(tmp_path / "out")])
    assert "summary.json: not valid JSON" in one_line_error(capsys.readouterr().err, status)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_through_latest_the_tables_are_named_after_the_run(run, tmp_path) -> None:
    """`joulebench export runs/latest` (as README shows it): the run's id, not the link's name."""
    latest = run.parent / "latest"
    assert latest.is_symlink()
    assert run_main(["export", str(latest), "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{run.name}-arms.csv", f"{run.name}-requests.csv"]
    assert set(pd.read_csv(tmp_path / f"{run.name}-arms.csv")["run_id"]) == {run.name}


def _power_in_manifest_only(run: Path) -> None:
    RunFolder.open(run).update_manifest(power={"sources": [{"kind": "sidecar", "role": "primary"}]})


@pytest.mark.parametrize("measured", ["power.parquet", "manifest power section"])
def test_power_read_but_not_reported_is_refused(measured, tmp_path, capsys) -> None:
    """Without summary.json its arms are not runs without power: no `no_power` rows, nothing written."""
    run = build_run(tmp_path / "runs", with_power=measured == "power.parquet")
    if measured != "power.parquet":
        _power_in_manifest_only(run)
    status = run_main(["export", str(run), "--out", str(tmp_path / "out")])
    assert one_line_error(capsys.readouterr().err, status) == (
        f"{run}: power was read but not reported: run joulebench report {run} first"
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_manifest_run_id_that_is_not_a_file_name_is_not_used(tmp_path) -> None:
    run = build_run(tmp_path / "runs", with_power=False)
    RunFolder.open(run).update_manifest(run_id="../../elsewhere")
    assert run_main(["export", str(run), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{run.name}-arms.csv",
        f"{run.name}-requests.csv",
    ]
