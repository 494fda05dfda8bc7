"""Reports of shaped runs: the policy, its holds and latency as users see it in the terminal and on the
page, only where some arm is shaped; goodput under the SLO the run recorded."""

from __future__ import annotations

import json

import pytest
from joulebench_testkit import one_line_error, run_main
from rich.console import Console
from run_synth import build_run

from harness.report import report_run
from harness.report.format import fmt_num
from harness.runfolder import RunFolder


def terminal(run, width: int = 160) -> str:
    console = Console(record=True, width=width)
    report_run(run, console=console)
    return console.export_text()


def test_a_shaped_run_shows_what_users_paid(tmp_path) -> None:
    run = build_run(tmp_path, policy="window:period=1", hold_ms=300.0)
    text = terminal(run)
    assert "as users see it" in text
    row = next(line for line in text.splitlines() if line.startswith("│ fixed") and "300" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:2] == ["fixed", "300.0/300.0"]  # hold p50 and p99, ms
    page = (run / "report.html").read_text()
    assert "hold p50 / p99 / max (ms)" in page and "window:period=1" in page
    assert "user E2E p50 / p99 (ms, from arrival)" in page
    summary = json.loads((run / "summary.json").read_text())
    fixed = summary["arms"][0]
    assert fixed["policy"] == {"spec": "window:period=1", "name": "window-1s"}
    assert fixed["latency_s"]["user_e2e"]["p50"] == pytest.approx(fixed["latency_s"]["e2e"]["p50"] + 0.3)
    for cell, key in zip(cells[2:4], ("user_ttft", "user_e2e"), strict=True):  # p50/p99 of each, ms
        stats = fixed["latency_s"][key]
        assert cell == f"{fmt_num(stats['p50'] * 1e3)}/{fmt_num(stats['p99'] * 1e3)}"


def test_the_users_table_fits_80_columns(tmp_path) -> None:
    run = build_run(tmp_path, policy="batch:k=8,max_wait=2", hold_ms=120.0)
    RunFolder.open(run).update_manifest(energy={"method": "time", "slo_e2e_s": 1.0})
    text = terminal(run, width=80)
    table = text[text.index("as users see it") :].split("energy:")[0]
    assert all(len(line) <= 80 for line in table.splitlines())
    header = "arm ┃ hold p50/p99 ┃ TTFT p50/p99 ┃ E2E p50/p99 ┃ goodput"
    assert " ".join(header.split()) in " ".join(table.split())  # no heading wrapped


def test_an_unshaped_run_has_no_users_rows(tmp_path) -> None:
    run = build_run(tmp_path)
    assert "as users see it" not in terminal(run)
    page = (run / "report.html").read_text()
    assert "hold p50" not in page and "goodput" not in page.split('id="joulebench-summary"')[0]


def test_goodput_under_the_slo_the_run_recorded(tmp_path) -> None:
    run = build_run(tmp_path, policy="window:period=1", hold_ms=300.0)
    RunFolder.open(run).update_manifest(energy={"method": "time", "slo_ttft_s": 0.5})
    text = terminal(run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["options"]["slo_ttft_s"] == 0.5
    goodput = summary["arms"][0]["goodput"]
    assert goodput["met"] == 20 and goodput["share"] == 1.0  # 300 ms held + 30 ms to the first token
    assert "100% 2" in text and "goodput" in (run / "report.html").read_text()
    RunFolder.open(run).update_manifest(energy={"method": "time", "slo_ttft_s": 0.25})
    terminal(run)
    assert json.loads((run / "summary.json").read_text())["arms"][0]["goodput"]["met"] == 0


def test_a_damaged_slo_in_the_manifest_is_one_line(tmp_path, capsys) -> None:
    run = build_run(tmp_path)
    RunFolder.open(run).update_manifest(energy={"method": "time", "slo_e2e_s": "soon"})
    status = run_main(["report", str(run)])
    message = one_line_error(capsys.readouterr().err, status)
    assert message.endswith("manifest.json: energy.slo_e2e_s: expected seconds > 0, got 'soon'"), message
