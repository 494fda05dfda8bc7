"""`joulebench merge --sidecar/--prometheus/--power-samples`: a sharded run gets the energy a single run
gets. Real parts: two shards (in this process, side by side, one `--start-at`) against a mock server
process, power from a simulated sidecar process (which also logs its samples to a file) and from the
real Prometheus scraping it; the merged folder goes through the run's own power and report stages."""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from joulebench_testkit import (
    PrometheusServer,
    on_another_host,
    one_line_error,
    run_joulebench,
    run_main,
    run_mock_server,
    side_by_side,
    simulated_sidecar,
)
from rich.console import Console

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.energy.grid import window_energy
from harness.power.sources import PrometheusSource
from harness.records import Shard
from harness.runfolder import RunFolder
from harness.runfolder.power_file import load_power
from harness.runner import RunOptions
from harness.session.config import MeasureConfig, PowerConfig, ServerConfig, TargetConfig
from harness.session.measured_run import PlanSource, run_measured
from harness.session.merged_power import MergePowerConfig, merge_measured
from harness.session.power_stage import PowerStage
from harness.session.stage_state import MeasureState
from traffic.builder import build_plan
from traffic.plan import save_plan
from traffic.spec import PlanSpec

pytestmark = pytest.mark.slow

IDLE_BEFORE_S = 1.0


def _plan_spec() -> PlanSpec:
    return PlanSpec.parse(
        {
            "prompts": "synthetic",
            "schedules": ["fixed:interval=0.04", "poisson:rate=30"],
            "n": 30,
            "seed": 3,
            "max_tokens": 8,
            "ignore_eos": True,
        }
    )


def _run(url: str, out: Path, options: RunOptions, power: PowerConfig | None = None) -> int:
    """One run of the module's plan, in this process; with `power`, an idle window before it only and
    no report.html (what the comparison needs, in less time)."""
    measure = MeasureConfig(server=ServerConfig(metrics="off"))
    if power is not None:
        measure = replace(measure, power=power, idle_s=IDLE_BEFORE_S, idle_after=False, report_html=False)
    plan = PlanSource(file=out.parent / "plan.parquet")
    return run_measured(TargetConfig(url=url), plan, options, measure, out, console=_quiet())


def _prometheus(tmp: Path, sidecar: str) -> PrometheusServer | None:
    """Prometheus scraping the sidecar (None where the binary is missing: its test skips, not all)."""
    try:
        server = PrometheusServer(tmp, {"sidecar": [sidecar.removeprefix("http://")]}, scrape_s=0.25)
    except pytest.skip.Exception:
        return None
    server.wait_targets_up()
    return server


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The mock, its simulated sidecar (logging to a file), Prometheus scraping it, two merged-to-be
    shards of one plan, and the same plan run once unsharded with the sidecar as its power source."""
    tmp = tmp_path_factory.mktemp("merge-power")
    save_plan(build_plan(_plan_spec()), tmp / "plan.parquet")
    log = tmp / "sidecar-samples.jsonl"
    with (
        run_mock_server(log_dir=tmp) as mock,
        simulated_sidecar(mock.url, "--interval", "0.02", "--log", str(log), log_dir=tmp) as sidecar,
    ):
        prometheus = _prometheus(tmp, sidecar.url)
        try:
            start_at = time.time() + IDLE_BEFORE_S + 1.0  # idle history in both sources before it
            codes = side_by_side(
                lambda i: _run(
                    mock.url,
                    tmp / f"shard{i}",
                    RunOptions(shard=Shard(i, 2), start_at_epoch_s=start_at, progress=False),
                ),
                range(2),
            )
            assert codes == [0, 0]
            shards = [next((tmp / f"shard{i}").iterdir()) for i in range(2)]
            power = PowerConfig(sidecar=sidecar.url)
            assert _run(mock.url, tmp / "single", RunOptions(progress=False), power) == 0
            single = next(p for p in (tmp / "single").iterdir() if not p.is_symlink())
            yield {
                "tmp": tmp, "shards": shards, "single": single, "sidecar": sidecar.url,
                "prometheus": prometheus, "log": log,
            }  # fmt: skip
        finally:
            if prometheus is not None:
                prometheus.stop()


def _quiet() -> Console:
    return Console(file=io.StringIO())


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _codes(summary: dict) -> set[str]:
    return {f["code"] for f in summary["flags"]}


def _power_energy(folder: Path, start_ns: int, end_ns: int) -> float:
    """The power series' own energy over [start, end], from the folder's power.parquet."""
    total = 0.0
    for series in load_power(folder).series:
        joules, covered = window_energy(series, start_ns, end_ns)
        assert covered > 0.99 * (end_ns - start_ns) / 1e9, f"gpu {series.gpu}: {covered} s covered"
        total += joules
    return total


def _check_energy(folder: Path) -> dict:
    """Conservation, per-request energies and the report: what a single run's folder holds."""
    summary = _summary(folder)
    run = RunFolder.open(folder).manifest()["run"]
    total = summary["run"]["energy_j_total"]
    assert total == pytest.approx(_power_energy(folder, run["start_ns"], run["end_ns"]), rel=1e-6)
    conservation = summary["conservation"]
    assert conservation["total_j"] == pytest.approx(total, rel=1e-9)
    assert abs(conservation["residual_j"]) < 1e-6 * total
    energy = pd.read_parquet(folder / "energy.parquet")
    measured = energy[energy["request_id"] >= 0]
    assert sorted(measured["request_id"]) == sorted(RunFolder.open(folder).plan().rows["request_id"])
    assert np.isfinite(measured["energy_j"]).all() and (measured["energy_j"] > 0).all()
    assert (folder / "report.html").stat().st_size > 10_000
    assert not {f["code"] for f in summary["flags"] if f["severity"] == "error"}
    return summary


def test_merge_with_the_sidecar_reports_energy_as_a_single_run_does(stack) -> None:
    tmp = stack["tmp"]
    sidecar = stack["sidecar"].replace("http://", "http://user:hunter2@")  # masked in the manifest
    result = run_joulebench(
        "merge", *map(str, stack["shards"]), "--sidecar", sidecar, "--gpus", "0",
        "--idle-before", str(IDLE_BEFORE_S), "--strict", "--out", "merged", cwd=tmp, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = tmp / result.stdout.strip()  # stdout: the folder only; the verdict goes to stderr
    summary = _check_energy(folder)
    assert f"report: {folder.relative_to(tmp) / 'report.html'}" in result.stderr  # the run's own verdict
    manifest = RunFolder.open(folder).manifest()
    assert manifest["power"]["primary"] == "sidecar" and manifest["power"]["gpus"] == ["0"]
    # The merge's own command line (beside shard 0's) says how the power was attached.
    merge_line = manifest["merge"]["command_line"]
    assert merge_line[1] == "merge" and "--sidecar" in merge_line and "hunter2" not in " ".join(merge_line)
    page = (folder / "report.html").read_text()  # and the report shows it, redacted
    assert 'id="run-merge-command-line"' in page and "--sidecar" in page and "hunter2" not in page
    assert manifest["idle"]["pre"]["end_ns"] - manifest["idle"]["pre"]["start_ns"] == IDLE_BEFORE_S * 1e9
    assert summary["idle"]["pre_w"] and not _codes(summary) & {"idle_window_unmeasured", "no_idle_power"}
    assert summary["idle"]["mode"] != "in-run"

    # The same plan on the same GPU, unsharded: the same energy per request, within run-to-run noise.
    single = _summary(stack["single"])
    for key in ("j_per_request", "j_per_output_token"):
        assert summary["run"]["all_in"][key] == pytest.approx(single["run"]["all_in"][key], rel=0.1), key


@pytest.mark.prometheus
def test_merge_with_prometheus_reads_the_history_after_the_fact(stack) -> None:
    if stack["prometheus"] is None:
        PrometheusServer(stack["tmp"])  # skips (or, in CI, fails) saying why
    out = stack["tmp"] / "merged-prometheus"
    config = MergePowerConfig(
        power=PowerConfig(prometheus=stack["prometheus"].url, prometheus_step_s=0.25),
        idle_before_s=IDLE_BEFORE_S,
        strict=True,
    )
    folder, code = merge_measured(stack["shards"], out, config, _quiet())
    assert code == 0
    summary = _check_energy(folder)
    assert RunFolder.open(folder).manifest()["power"]["primary"] == "prometheus"
    # The counter read through Prometheus and through the sidecar agree over the same window.
    by_sidecar, _ = merge_measured(
        stack["shards"],
        out,
        MergePowerConfig(power=PowerConfig(sidecar=stack["sidecar"])),
        _quiet(),
    )
    assert summary["run"]["energy_j_total"] == pytest.approx(
        _summary(by_sidecar)["run"]["energy_j_total"], rel=0.05
    )


@pytest.mark.prometheus
def test_a_sample_log_beside_prometheus_is_not_probed_as_a_sidecar_url(stack) -> None:
    """The counter's clock offset is probed from --sidecar's URL when the sidecar seen through
    Prometheus is on another kernel than shard 0 (here: shard 0's anchor names another boot_id); a
    sample log (--power-samples) has no URL, so nothing is probed and the mapping is unmeasured."""
    if stack["prometheus"] is None:
        PrometheusServer(stack["tmp"])  # skips (or, in CI, fails) saying why
    config = MergePowerConfig(power=PowerConfig(prometheus=stack["prometheus"].url), samples=stack["log"])
    stage = PowerStage(config.validate().power_config, MeasureState(), _quiet())
    here = ClockAnchor.now()
    stage.preflight(replace(here, boot_id="shard-0-elsewhere"))
    (prometheus,) = [s.reader for s in stage.sources if s.kind == "prometheus"]
    assert isinstance(prometheus, PrometheusSource) and prometheus.offset is None


def _truncated_log(source: Path, into: Path, before_ns: int) -> Path:
    """The sidecar's sample log cut at `before_ns` (its monotonic clock, this host's): power that
    stops part-way through the run."""
    lines = source.read_text().splitlines()
    kept = [line for line in lines if not line.startswith("[") or json.loads(line)[1] < before_ns]
    into.write_text("\n".join(kept) + "\n")
    return into


def test_power_missing_part_of_the_window_is_flagged_and_strict_fails(stack) -> None:
    tmp = stack["tmp"]
    run = RunFolder.open(stack["shards"][0]).manifest()["run"]
    middle = (run["start_ns"] + run["end_ns"]) // 2
    partial = _truncated_log(stack["log"], tmp / "partial.jsonl", middle)
    config = MergePowerConfig(samples=partial, strict=True)
    console = io.StringIO()
    folder, code = merge_measured(stack["shards"], tmp / "merged-partial", config, Console(file=console))
    assert code == 1, console.getvalue()
    summary = _summary(folder)
    assert "power_partial" in _codes(summary)
    errors = {f["code"] for f in summary["flags"] if f["severity"] == "error"}
    assert errors & {"power_incomplete", "power_outside_run"}, summary["flags"]
    assert "--strict" in console.getvalue()
    # The whole log covers the window: no flag, exit 0 (the test above fails for the cut, not the file).
    whole, code = merge_measured(
        stack["shards"], tmp / "merged-log", MergePowerConfig(samples=stack["log"], strict=True),
        _quiet(),
    )  # fmt: skip
    assert code == 0 and "power_partial" not in _codes(_summary(whole))


def test_clocks_mapped_through_epoch_time_are_flagged_and_strict_fails(stack) -> None:
    tmp = stack["tmp"]
    shard0, shard1 = stack["shards"]
    elsewhere = tmp / "elsewhere"
    moved1 = on_another_host(shard1, elsewhere / "1")
    config = MergePowerConfig(power=PowerConfig(sidecar=stack["sidecar"]), strict=True)
    console = io.StringIO()
    folder, code = merge_measured([shard0, moved1], tmp / "merged-epoch", config, Console(file=console))
    assert code == 1 and "shard(s) 1/2 ran on another host" in console.getvalue()
    issues = [f["message"] for f in _summary(folder)["flags"] if f["code"] == "power_issue"]
    assert any("1/2 ran on another host" in m for m in issues)

    # Shard 0 on another host than this merge: no offset can be probed from here. A sidecar over HTTP
    # would be probed, so it is refused; a sample log maps through epoch time, flagged.
    moved0 = on_another_host(shard0, elsewhere / "0")
    with pytest.raises(InputError, match="neither the sidecar nor this merge runs on shard 0's host"):
        merge_measured([moved0, shard1], tmp / "refused", config, _quiet())
    assert not (tmp / "refused").exists()
    console = io.StringIO()
    from_log = MergePowerConfig(samples=stack["log"], strict=True)
    folder, code = merge_measured([moved0, shard1], tmp / "merged-log-epoch", from_log, Console(file=console))
    assert code == 1 and "clock_unmeasured" in _codes(_summary(folder)), console.getvalue()
    # Through epoch time on one machine the figures are those of the exact mapping (well within 1%).
    exact, _ = merge_measured(
        [shard0, shard1], tmp / "exact", MergePowerConfig(samples=stack["log"]), _quiet()
    )
    assert _summary(folder)["run"]["energy_j_total"] == pytest.approx(
        _summary(exact)["run"]["energy_j_total"], rel=0.01
    )


BAD = [
    (("--idle-before", "-1", "--sidecar", "http://127.0.0.1:9"), "--idle-before: expected seconds above 0"),
    (("--idle-before", "nan", "--sidecar", "http://127.0.0.1:9"), "--idle-before: expected seconds above 0"),
    (("--idle-before", "abc"), "--idle-before: expected a number, got 'abc'"),
    (("--idle-before", "5"), "--idle-before: needs a power source"),
    (("--gpus", "0"), "--gpus: needs a power source"),
    (("--strict",), "--strict: needs a power source"),
    (("--prometheus-step", "5"), "--prometheus-step: needs a power source"),
    (("--power-samples", "EMPTY"), "--power-samples empty.jsonl: empty sample log"),
    (("--prometheus", "not-a-url"), "--prometheus 'not-a-url': not an http(s) URL"),
    (("--sidecar", "http://127.0.0.1:9", "--gpus", "x"), "--gpus"),
    (("--power-samples", "missing.jsonl"), "--power-samples missing.jsonl: file not found"),
    (("--sidecar", "http://127.0.0.1:9"), "http://127.0.0.1:9"),  # nothing listens there
    (("--sidecar", "SIDECAR", "--idle-before", "60"), "--idle-before 60: warm-up requests ran until"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_are_one_line_and_leave_no_folder(
    stack, args, message, capsys, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.jsonl").touch()
    args = [{"SIDECAR": stack["sidecar"], "EMPTY": "empty.jsonl"}.get(arg, arg) for arg in args]
    status = run_main(["merge", *map(str, stack["shards"]), *args, "--out", "merged"])
    assert message in one_line_error(capsys.readouterr().err, status)
    assert not (tmp_path / "merged").exists()
