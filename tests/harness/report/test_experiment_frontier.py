"""An experiment of policies: what users pay per arm over repeats, the energy-latency front by means, and
which dominations the repeats resolve (both paired intervals exclude zero), in the document, the page,
the terminal and the frontier plot; an unshaped experiment keeps its report."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from test_experiment_report import LONG, PNG, make_cells, view

from harness.energy import repeats
from harness.report.experiment_frontier import GOODPUT, LATENCY, USER_FIGURES, paired_difference
from harness.report.experiment_plots import experiment_images, frontier
from harness.report.experiment_report import (
    ATTRIBUTED,
    experiment_document,
    experiment_table,
    render_experiment_html,
)

FAST, ONE, TWO = "poisson+passthrough", "poisson+window-1s", "poisson+window-2s"
RENAME = {LONG: FAST, "steady": ONE, "steady-twin": TWO}
# (all-in J/request, user TTFT p99 s): passthrough is fast and dear, window-1s cheap and slower, and
# window-2s slower and dearer than window-1s: dominated by it.
TRUE = {FAST: (16.0, 0.05), ONE: (10.0, 1.0), TWO: (12.0, 2.0)}
# Per repeat: a wobble that leaves a difference's mean positive and its interval across zero.
WOBBLE = {1: 2.0, 2: -0.9, 3: 2.0, 4: -0.9, 5: 2.0, 6: -0.9}


def shaped_cells(rates: list[float], wobble: str | None = None, slo: bool = True) -> pd.DataFrame:
    """make_cells' design with its arms renamed as policies and figures set per (arm, repeat): a host
    drift shared by a repeat's arms, and `wobble` ('energy' or 'latency') on window-2s's figure."""
    cells = make_cells(rates, repeat_count=6)
    cells["arm"] = cells["arm"].map(RENAME)
    cells["previous_arm"] = cells["previous_arm"].map(RENAME)
    for column in [*USER_FIGURES, GOODPUT]:
        cells[column] = np.nan
    for i in cells.index[cells["status"] == "done"]:
        arm, r = cells.at[i, "arm"], int(cells.at[i, "repeat"])
        energy, latency = TRUE[arm]
        if arm == TWO and wobble == "energy":
            energy = TRUE[ONE][0] + 1.0 + WOBBLE[r]
        if arm == TWO and wobble == "latency":
            latency = TRUE[ONE][1] + 0.5 + WOBBLE[r]
        energy += 0.2 * r + 0.03 * ((r * (1 + list(TRUE).index(arm))) % 4)  # drift, the pair cancels it
        latency += 0.01 * r + 0.001 * (r % 2)
        hold = 0.0 if arm == FAST else 1e3 * (latency - 0.04)
        cells.loc[i, ["j_per_request_all_in", ATTRIBUTED, "j_above_idle_per_request"]] = [
            energy, energy - 2.0, energy - 3.0,
        ]  # fmt: skip
        cells.loc[i, list(USER_FIGURES)] = [
            0.5 * hold,
            hold,
            latency / 2,
            latency,
            latency / 2 + 0.3,
            latency + 0.3,
        ]
        cells.loc[i, GOODPUT] = (1.0 if latency <= 1.5 else 0.8) if slo else np.nan
    return cells


def _doc(cells: pd.DataFrame, rates: list[float] | None = None) -> dict:
    design = view(rates, simulated=True)
    return experiment_document(
        cells, type(design)(design.experiment_id, design.title, {**design.design, "slo_ttft_s": 1.5})
    )


def _arm(doc: dict, name: str, rate: float | None = None) -> dict:
    block = next(b for b in doc["rates"] if b["rate"] == rate)
    return next(a for a in block["arms"] if a["arm"] == name)


@pytest.fixture(scope="module")
def clean() -> tuple[pd.DataFrame, dict]:
    cells = shaped_cells([float("nan")])
    return cells, _doc(cells)


def test_users_figures_are_means_with_intervals_over_repeats(clean) -> None:
    cells, doc = clean
    assert doc["shaped"] and doc["frontier"]["latency"] == LATENCY and doc["frontier"]["slo_ttft_s"] == 1.5
    for metric in [*USER_FIGURES, GOODPUT, "j_above_idle_per_request"]:
        resolution = "resolution_j_per_request" if metric.startswith("j_") else None
        for fig in repeats.arm_figures(cells, metric, 0.95, resolution=resolution):
            shown = _arm(doc, fig.arm)["figures"][metric]
            assert shown["mean"] == pytest.approx(fig.mean) and shown["repeats"] == fig.repeats
            assert fig.ci is not None and shown["ci"] == pytest.approx(list(fig.ci))
    latency_pairs = repeats.pair_differences(cells, LATENCY, 0.95, "bonferroni")
    assert [p["mean"] for p in doc["rates"][0]["pairs"][LATENCY]] == pytest.approx(
        [p.mean for p in latency_pairs]
    )


def test_the_front_by_means_and_a_domination_the_repeats_resolve(clean) -> None:
    cells, doc = clean
    block = doc["rates"][0]
    assert block["front"] == [FAST, ONE]  # by rising latency
    assert [_arm(doc, a)["on_front"] for a in (FAST, ONE, TWO)] == [True, True, False]
    assert [_arm(doc, a)["label"] for a in (FAST, ONE, TWO)] == ["passthrough", "window-1s", "window-2s"]
    (by,) = _arm(doc, TWO)["dominated_by"]
    assert by["arm"] == ONE and by["resolved"]
    # The paired differences window-2s − window-1s, as repeats.py computes them, Bonferroni over 3 pairs.
    for key, metric in (("energy", "j_per_request_all_in"), ("latency", LATENCY)):
        pair = next(p for p in repeats.pair_differences(cells, metric, 0.95) if {p.a, p.b} == {ONE, TWO})
        sign = 1 if pair.a == TWO else -1
        assert pair.ci is not None
        assert by[key]["mean"] == pytest.approx(sign * pair.mean)
        assert sorted(by[key]["ci"]) == pytest.approx(sorted(sign * c for c in pair.ci))
        assert by[key]["ci"][0] > 0 and by[key]["level"] == pytest.approx(1 - 0.05 / 3)


@pytest.mark.parametrize("wobble", ["energy", "latency"])
def test_a_domination_by_means_is_unresolved_when_either_interval_covers_zero(wobble: str) -> None:
    doc = _doc(shaped_cells([float("nan")], wobble=wobble))
    two = _arm(doc, TWO)
    assert two["on_front"] is False
    (by,) = two["dominated_by"]
    assert by["arm"] == ONE and not by["resolved"]
    other = "latency" if wobble == "energy" else "energy"
    assert by[wobble]["mean"] > 0 and by[wobble]["ci"][0] < 0 < by[wobble]["ci"][1]
    assert by[other]["ci"][0] > 0  # the other figure alone does not make the claim
    page = render_experiment_html(doc, shaped_cells([float("nan")], wobble=wobble))
    assert "window-2s: dominated by window-1s by the means only, not resolved by the repeats" in page


def test_the_page_shows_the_policies_the_front_and_what_the_repeats_resolve(clean) -> None:
    cells, doc = clean
    page = render_experiment_html(doc, cells)
    section = page[page.index("<h2>Policies") : page.index("<h2>Pairwise")]
    assert "The front is by means" in section and "resolved by the repeats" in section
    for head in ("hold p99 (ms)", "user TTFT p99 (s)", "user E2E p50 (s)", "goodput (% of planned within"):
        assert head in section
    assert section.count("● on the front") == 2 and "TTFT ≤ 1.5 s" in section
    assert (
        "window-2s: dominated by window-1s, resolved by the repeats (window-2s − window-1s: energy" in section
    )
    assert (
        "On the front at the arms&#x27; own rates (by means, by rising latency): passthrough, window-1s."
        in section
    )
    image = re.search(
        r'<h2>Energy-latency frontier[^<]*</h2><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', section
    )
    assert image and base64.b64decode(image.group(1)).startswith(PNG)


def test_the_terminal_marks_the_front_and_lists_the_dominations(clean) -> None:
    _, doc = clean
    console = Console(width=140, record=True)
    console.print(experiment_table(doc))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 140
    assert "user TTFT p99 s ±CI" in text and "goodput %" in text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│ poisson")}
    assert rows[FAST].rstrip(" │").endswith("●") and rows[ONE].rstrip(" │").endswith("●")
    assert not rows[TWO].rstrip(" │").endswith("●")
    assert "at the arms' own rates: passthrough, window-1s" in text
    assert "window-2s: dominated by window-1s, resolved by the repeats" in " ".join(text.split())


def test_the_frontier_plot_has_a_panel_per_rate_with_the_front_as_a_staircase() -> None:
    doc = _doc(shaped_cells([1.0, 2.0]), [1.0, 2.0])
    images = experiment_images(doc)
    assert [i.file_name for i in images] == ["sweep.png", "frontier.png"]
    assert images[-1].png.startswith(PNG)
    fig = frontier(doc)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["1.00 req/s", "2.00 req/s"]
    for ax, block in zip(panels, doc["rates"], strict=True):
        stairs = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_xdata())]
        assert len(stairs) == 1  # through the front's means, by rising latency
        expected = [_arm(doc, a, block["rate"])["figures"][LATENCY]["mean"] for a in block["front"]]
        assert list(stairs[0].get_xdata()) == pytest.approx(expected)
        labels = {t.get_text() for t in ax.texts}
        assert labels == {"passthrough", "window-1s", "window-2s"}
        assert ax.get_xscale() == "log"  # 0.05 s to 2 s


def test_an_unshaped_experiment_keeps_its_document_and_shows_goodput_under_an_slo() -> None:
    plain = make_cells([1.0, 2.0])
    before = experiment_document(plain, view([1.0, 2.0], simulated=True))
    with_columns = plain.assign(
        hold_p50_ms=0.0, hold_p99_ms=0.0, user_ttft_p50_s=plain["ttft_p50_s"], user_ttft_p99_s=0.2,
        user_e2e_p50_s=plain["e2e_p50_s"], user_e2e_p99_s=2.0, goodput_share=np.nan,
    )  # fmt: skip
    after = experiment_document(with_columns, view([1.0, 2.0], simulated=True))
    assert "shaped" not in after and "frontier" not in after
    assert after == before  # the same document, the new columns and all
    assert [i.file_name for i in experiment_images(after)] == ["sweep.png"]
    page = render_experiment_html(after, with_columns)
    assert "<h2>Policies" not in page and "hold p99" not in page and "goodput" not in page
    slo = with_columns.assign(goodput_share=np.where(with_columns["status"] == "done", 0.9, np.nan))
    doc = experiment_document(slo, view([1.0, 2.0], simulated=True))
    assert doc["rates"][0]["arms"][0]["figures"][GOODPUT]["mean"] == pytest.approx(0.9)
    page = render_experiment_html(doc, slo)
    assert "goodput (% of planned within the SLO)" in page and "90.00 [90.00, 90.00]" in page


def test_a_paired_difference_is_read_the_same_from_either_orientation() -> None:
    pair = {"a": ONE, "b": TWO, "mean": -2.0, "ci": [-3.0, -1.0], "level": 0.99, "repeats": 6}
    flipped = {"mean": 2.0, "ci": [1.0, 3.0], "level": 0.99, "repeats": 6}
    assert paired_difference([pair], TWO, ONE) == flipped
    assert paired_difference([pair], ONE, TWO) == {**flipped, "mean": -2.0, "ci": [-3.0, -1.0]}
    assert paired_difference([pair], ONE, FAST)["ci"] is None  # no such pair: nothing to resolve with
