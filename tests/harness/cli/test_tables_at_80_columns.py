"""The results tables at an 80-column terminal: the columns that fit, each figure whole (never "…"),
and one line naming the columns left out. `joulebench report` on a synthetic run folder, and the
requests table of a `joulebench run` with no power source against the real mock server."""

from __future__ import annotations

import json

from joulebench_testkit import run_mock_server
from synth_runs import build_run
from terminal_80 import in_terminal

from harness.report.format import fmt_ci, fmt_num
from harness.report.terminal import all_in_cell


def _rows(text: str, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The cells of each table row whose first cell is one of `names`."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] in names:
            rows[cells[0]] = cells
    return rows


def test_the_report_table_keeps_its_figures_whole(tmp_path) -> None:
    run = build_run(tmp_path)
    status, text = in_terminal("report", str(run))
    assert status == 0, text
    assert "…" not in text
    table = text[text.index("joulebench · ") : text.index("energy: ")]
    assert all(len(line) <= 80 for line in table.splitlines())
    summary = json.loads((run / "summary.json").read_text())
    blocks = [*summary["arms"], summary["run"]]
    rows = _rows(table, tuple(block["name"] for block in blocks))
    assert len(rows) == len(blocks)
    for block in blocks:
        jpr, requests = block["j_per_request"], block["requests"]
        assert rows[block["name"]][1:5] == [
            f"{requests['ok']}/{requests['total']}", fmt_num(jpr["mean"]), fmt_ci(jpr["ci95"]),
            all_in_cell(block),
        ]  # fmt: skip
    (note,) = [line for line in table.splitlines() if line.startswith("not shown at 80 columns: ")]
    assert "p50" in note and "all-in J/req" not in note


def test_the_requests_table_of_a_run_without_power_keeps_its_figures_whole(tmp_path) -> None:
    with run_mock_server("--speed", "10") as mock:
        status, text = in_terminal(
            "run", "--target", mock.url, "--n", "4", "--schedule", "fixed:interval=0.1",
            "--out", str(tmp_path),
        )  # fmt: skip
    assert status == 0, text
    table = text[text.index("requests per arm") : text.index("report: ")]
    assert "…" not in table
    assert all(len(line) <= 80 for line in table.splitlines())
    # TTFT and E2E are all a run without power measured: never left out; planned (= sent here) goes first.
    (note,) = [line for line in table.splitlines() if line.startswith("not shown at 80 columns: ")]
    assert "planned" in note and "TTFT" not in note and "E2E" not in note
    fixed = _rows(table, ("fixed",))["fixed"]
    assert fixed[1:4] == ["4", "4", "0"]  # sent, ok, not ok: whole at 80 columns
    (lateness,) = [cell.split(" / ") for cell in fixed if " / " in cell]
    assert len(lateness) == 2 and all(float(ms) >= 0 for ms in lateness)
    ttft, e2e = float(fixed[-2]), float(fixed[-1])  # ms, whole
    assert 0 < ttft <= e2e
