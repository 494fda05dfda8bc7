"""report.html: all-in as idle + above idle, the power lag beside the energy account, the work fit in
one line, the Wh row named as attributed; and a summary written before those keys still renders."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from harness.report.format import fmt_num, fmt_power_lag
from harness.report.html import render_html, token_fit_line
from harness.report.run_inputs import analyze_run
from harness.report.run_report import summary_document

RESULTS = Path(__file__).resolve().parents[3] / "docs/results/arrival-shaping-h100"
H100_RUN = RESULTS / "raw/20261122T041328-345a8a03"
# The same plan replayed on the mock, summarized before all_in_split, power_lag and token_fit existed.
OLDER_SUMMARY = RESULTS / "mock-replay/default/20261122T043612-345a8a03/summary.json"


def _row(page: str, label: str) -> list[str]:
    """The cells of the results table's row named `label`."""
    match = re.search(rf"<tr><td>{re.escape(html.escape(label))}</td>(.*?)</tr>", page)
    assert match, label
    return [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", match.group(1))]


def test_the_page_splits_all_in_and_shows_the_lag_and_the_work_fit() -> None:
    inputs, analysis = analyze_run(H100_RUN, method="steps")
    doc = summary_document(analysis, "r")
    page = render_html(doc, analysis, inputs.facts)
    blocks = [*doc["arms"], doc["run"]]
    idle = _row(page, "all-in J per request = idle (the idle floor's share)")
    above = _row(page, "+ above idle")
    assert idle == [fmt_num(b["all_in_split"]["idle_j_per_request"]) for b in blocks]
    assert above == [fmt_num(b["all_in_split"]["above_idle_j_per_request"]) for b in blocks]
    wh = [fmt_num(b["wh_per_request"]["mean"]) for b in blocks]
    assert _row(page, "attributed Wh per request: mean") == wh
    account = page[page.index("<h2>Energy account</h2>") : page.index("<h2>Flags</h2>")]
    lag = fmt_power_lag(doc["power_lag"])
    assert lag and f'<p id="power-lag">{html.escape(lag)}</p>' in account
    fit = doc["token_fit"]
    line = token_fit_line(fit)
    assert line and f'<p id="token-fit">{html.escape(line)}</p>' in account
    for key, unit in (("j_per_step", "step"), ("j_per_decoded_token", "decoded token")):
        assert f"{fmt_num(fit[key])} J/{unit}" in line
    assert f"R² {fmt_num(fit['r2'], digits=3)}" in line and ("; usable" in line) is fit["usable"]


def test_an_unusable_fit_says_why() -> None:
    fit = {"j_per_step": None, "j_per_decoded_token": None, "j_per_prompt_token": None, "r2": None,
           "n_intervals": 3, "condition": None, "usable": False, "reason": "3 pools, fewer than 20",
           "weights": "prior"}  # fmt: skip
    line = token_fit_line(fit)
    assert line and "not usable: 3 pools, fewer than 20" in line and "split weights: prior" in line
    assert token_fit_line(None) is None


def test_an_older_committed_summary_still_renders() -> None:
    old = json.loads(OLDER_SUMMARY.read_text())
    for block in [*old["arms"], old["run"]]:
        block.pop("all_in_split", None)  # as it was written (kept true if the file is ever rewritten)
    old.pop("power_lag", None)
    old.pop("token_fit", None)
    # The plots need a joined run; the replay's own folder keeps only its summary, so use the run it
    # replayed (the same plan and arms).
    inputs, analysis = analyze_run(H100_RUN)
    page = render_html(old, analysis, inputs.facts)
    assert _row(page, "attributed Wh per request: mean")
    assert "<td>all-in J per request = idle" not in page and "<td>+ above idle" not in page
    assert 'id="power-lag"' not in page and 'id="token-fit"' not in page
