"""A run against a real mock server with no power source still gets its report.html: latency only,
saying that no power source was given, and what was measured (the full report's facts, its label among
them); `joulebench ls` says "no power" with its request counts."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from joulebench_testkit import run_joulebench, run_main, run_mock_server

from harness.runfolder import RunFolder


class _Text(HTMLParser):
    """The page's text, and its tables' rows as lists of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.rows: list[list[str]] = []
        self.in_cell = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.rows = []
            self.tables.append(self.rows)
        if tag == "tr":
            self.rows.append([])
        self.in_cell = self.in_cell or tag in ("td", "th")  # a cell's <code> is still the cell

    def handle_endtag(self, tag: str) -> None:
        self.in_cell = self.in_cell and tag not in ("td", "th")

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.in_cell:
            self.rows[-1].append(data)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    with run_mock_server() as mock:
        done = run_joulebench(
            "run", "--target", mock.url, "--n", "4", "--schedule", "fixed:interval=0.1",
            "--label", "no power <A>", "--out", str(out),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (folder,) = [p for p in out.iterdir() if not p.is_symlink()]
    assert f"report: {folder / 'report.html'}" in done.stdout
    return folder


def test_the_report_shows_latency_and_says_there_is_no_energy(run) -> None:
    page = _Text()
    page.feed((run / "report.html").read_text())
    text = " ".join(page.text)
    assert "No power source was given (--sidecar, --prometheus or --dcgm)" in text
    assert "no energy figures: latency only" in text
    header, *arms = page.tables[-1]
    assert [row[0] for row in arms] == ["fixed"]
    cells = dict(zip(header, arms[0], strict=True))
    assert (cells["planned"], cells["sent"], cells["ok"], cells["not ok"]) == ("4", "4", "4", "0")
    p50, p99 = (float(v) for v in cells["TTFT p50 / p99 ms"].split(" / "))
    assert 0 < p50 <= p99
    assert not (run / "summary.json").exists()


def test_the_report_says_what_was_measured(run) -> None:
    page = _Text()
    page.feed((run / "report.html").read_text())
    facts, arms, _ = page.tables
    said = {row[0]: row[1] for row in facts}
    manifest = RunFolder.open(run).manifest()
    assert said["label"] == manifest["label"] == "no power <A>"
    assert said["target"] == manifest["target"]["url"]
    assert said["GPUs"] == "none (no power data)"
    assert said["plan"].endswith(f"{manifest['plan']['n']} requests, seed {manifest['plan']['seed']}")
    assert arms[1][:2] == ["fixed", "fixed:interval=0.1"]


def test_ls_says_no_power(run, capsys) -> None:
    assert run_main(["ls", str(run.parent)]) == 0
    _, line = capsys.readouterr().out.splitlines()
    assert line.startswith(run.name) and "4/4" in line and "no power" in line


def test_a_run_held_at_the_in_flight_cap_fails_strict_without_power(tmp_path) -> None:
    # No power, so no summary: the request table's own flags must still fail --strict.
    with run_mock_server() as mock:
        done = run_joulebench(
            "run", "--target", mock.url, "--n", "6", "--schedule", "fixed:interval=0.01",
            "--max-in-flight", "1", "--strict", "--out", str(tmp_path),
        )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "requests waited at --max-in-flight" in done.stdout
