"""The terminal's idle-apart table and power-lag line: drawn from a new summary, whole at 80 columns,
and left out (not an error) for a summary written before they existed."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from harness.report.format import fmt_num, fmt_power_lag
from harness.report.run_inputs import analyze_run
from harness.report.run_report import summary_document
from harness.report.terminal import render_terminal_summary

H100_RUN = (
    Path(__file__).resolve().parents[3] / "docs/results/arrival-shaping-h100/raw/20261122T041328-345a8a03"
)


def _text(summary: dict, width: int = 80) -> str:
    console = Console(width=width, record=True)
    render_terminal_summary(summary, console)
    return console.export_text()


def test_a_new_summary_shows_idle_apart_and_the_lag(tmp_path: Path) -> None:
    _, analysis = analyze_run(H100_RUN)
    summary = summary_document(analysis, "r")
    text = _text(summary)
    start = text.index("all-in = idle + above idle")
    table = text[start : text.index("└", start) + 1]
    assert "…" not in table and all(len(line) <= 80 for line in table.splitlines())
    for block in [*summary["arms"], summary["run"]]:
        split = block["all_in_split"]
        row = next(line for line in table.splitlines() if line.startswith(f"│ {block['name']} "))
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[2:4] == [
            fmt_num(split["idle_j_per_request"]),
            fmt_num(split["above_idle_j_per_request"]),
        ]
    lag = fmt_power_lag(summary["power_lag"])
    assert (
        lag is not None and lag.startswith("power lag (auto): gpu 0 estimated") and lag in _text(summary, 200)
    )


def test_an_older_summary_still_renders_without_them() -> None:
    old = json.loads((H100_RUN / "summary.json").read_text())
    for block in [*old["arms"], old["run"]]:
        block.pop("all_in_split", None)
    old.pop("power_lag", None)
    text = _text(old, width=160)
    assert "joulebench · " in text and "all-in = idle" not in text and "power lag" not in text
    assert fmt_power_lag(None) is None
