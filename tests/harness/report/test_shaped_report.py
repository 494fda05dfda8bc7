"""Reports of shaped runs: the policy, its holds and latency as users see it in the terminal and on the
page, only where some arm is shaped; goodput under the SLO the run recorded."""

from __future__ import annotations

import base64
import json
import re

import pytest
from joulebench_testkit import one_line_error, run_main
from rich.console import Console
from run_synth import build_run

from harness.report import frontier_plot, plots, report_run
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
    assert "energy-latency front" not in page and "Energy-latency frontier" not in page


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


def test_the_report_commands_slo_flags_override_the_runs(tmp_path, capsys) -> None:
    run = build_run(tmp_path, policy="window:period=1", hold_ms=300.0)
    RunFolder.open(run).update_manifest(energy={"method": "time", "slo_ttft_s": 0.25})
    assert run_main(["report", str(run), "--quiet", "--slo-ttft", "0.5", "--slo-e2e", "30"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["options"]["slo_ttft_s"], summary["options"]["slo_e2e_s"]) == (0.5, 30.0)
    assert summary["arms"][0]["goodput"]["met"] == 20  # within 0.5 s, not the run's 0.25 s
    capsys.readouterr()
    for flag, text in (("--slo-ttft", "0"), ("--slo-e2e", "soon")):
        status = run_main(["report", str(run), flag, text])
        message = one_line_error(capsys.readouterr().err, status)
        assert message.endswith(f"{flag}: expected seconds above 0, got {text!r}"), message


def test_a_damaged_slo_in_the_manifest_is_one_line(tmp_path, capsys) -> None:
    run = build_run(tmp_path)
    RunFolder.open(run).update_manifest(energy={"method": "time", "slo_e2e_s": "soon"})
    status = run_main(["report", str(run)])
    message = one_line_error(capsys.readouterr().err, status)
    assert message.endswith("manifest.json: energy.slo_e2e_s: expected seconds > 0, got 'soon'"), message


def _users_rows(text: str) -> dict[str, list[str]]:
    table = text[text.index("as users see it") :].split("energy:")[0]
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]
    return {row[0]: row for row in rows}


def test_a_shaped_run_marks_its_energy_latency_front(tmp_path) -> None:
    run = build_run(tmp_path, policy="window:period=1", hold_ms=300.0)
    text = terminal(run)
    fixed, bursty = json.loads((run / "summary.json").read_text())["arms"]
    # Held alike, so users wait alike (300 ms + 30 ms to the first token); bursty's batches cost less.
    assert fixed["latency_s"]["user_ttft"]["p99"] == pytest.approx(bursty["latency_s"]["user_ttft"]["p99"])
    assert bursty["all_in"]["j_per_request"] < fixed["all_in"]["j_per_request"]
    rows = _users_rows(text)
    assert rows["fixed"][-1] == "" and rows["bursty"][-1] == "●" and rows["run"][-1] == ""
    assert "front ●: on the energy-latency front" in text and "one run, no interval" in text
    page = (run / "report.html").read_text()
    row = re.search(
        r"<tr><td>on the energy-latency front \(all-in J/request vs user TTFT p99; one run\)</td>(.*?)</tr>",
        page,
    )
    assert row and re.findall(r"<td>(.*?)</td>", row.group(1)) == ["no", "● on the front", ""]
    image = re.search(
        r'<h2>Energy-latency frontier \(one run\)</h2><img alt="[^"]*" src="data:image/png;base64,([^"]+)"',
        page,
    )
    assert image and base64.b64decode(image.group(1)).startswith(b"\x89PNG")
    assert "One run: the points have no interval" in page and "joulebench run --repeats N" in page


def test_an_arm_without_its_whole_power_is_no_point_on_the_front(tmp_path) -> None:
    run = build_run(tmp_path, policy="window:period=1", hold_ms=300.0, power_end_s=30.0)
    rows = _users_rows(terminal(run))
    assert json.loads((run / "summary.json").read_text())["arms"][1]["power_coverage"]["complete"] is False
    assert rows["fixed"][-1] == "●" and rows["bursty"][-1] == "-"


def test_the_frontier_plot_marks_the_front_and_labels_each_policy() -> None:
    def arm(name: str, joules: float, p99: float) -> dict:
        return {"name": name, "policy": {"name": name.split("+")[1]}, "all_in": {"j_per_request": joules},
                "latency_s": {"user_ttft": {"p99": p99}}, "power_coverage": {"complete": True}}  # fmt: skip

    summary = {
        "arms": [arm("p+passthrough", 20.0, 0.03), arm("p+window-1s", 19.0, 1.0), arm("p+batch", 16.0, 0.5)]
    }
    fig = frontier_plot.run_frontier(summary, ["p+passthrough", "p+batch"])
    assert fig is not None
    (ax,) = fig.axes
    assert {t.get_text() for t in ax.texts} == {"passthrough", "window-1s", "batch"}
    (stairs,) = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert list(stairs.get_xdata()) == [0.03, 0.5] and list(stairs.get_ydata()) == [20.0, 16.0]
    assert base64.b64decode(plots.png(fig)).startswith(b"\x89PNG")
    no_energy = arm("p+x", 1.0, 0.1) | {"all_in": {"j_per_request": None}}
    assert frontier_plot.run_frontier({"arms": [no_energy]}, []) is None
