"""The experiment report from a synthetic cells table: the document is repeats.py's figures, the page and
the terminal show it (verdicts, banners, links, plots), and both fit where they are read."""

from __future__ import annotations

import base64
import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from harness.energy import repeats
from harness.report.experiment_plots import experiment_images, png_bytes, sweep
from harness.report.experiment_report import (
    ATTRIBUTED,
    FIGURE_METRICS,
    ExperimentView,
    experiment_document,
    experiment_table,
    render_experiment_html,
)

PNG = b"\x89PNG\r\n\x1a\n"
LONG = "bursty-gamma-cv4-long-name"  # much dearer than the twins, and a long name for the terminal
TRUE_J = {"steady": 10.0, "steady-twin": 10.0, LONG: 16.0}  # all-in J/request at rate 1


def make_cells(rates: list[float], repeat_count: int = 3, seed: int = 7) -> pd.DataFrame:
    """Every (repeat, rate, arm), arms in a seeded order per block; a shared drift per repeat (the host)
    plus a little noise per cell. The last block of the last repeat is pending, one cell was cut short, and
    one done cell lost its TTFT."""
    rng = np.random.default_rng(seed)
    rows = []
    block = 0
    for repeat in range(1, repeat_count + 1):
        drift = rng.normal(0, 0.3)
        for rate in rates:
            order = list(rng.permutation(list(TRUE_J)))
            for position, arm in enumerate(order):
                scale = 1.0 if np.isnan(rate) else 1.0 / (0.5 + 0.5 * rate)
                all_in = (TRUE_J[arm] + drift + rng.normal(0, 0.05)) * scale
                idle = 3.0 * scale
                cell = len(rows)
                run_id = f"r{cell:03d}-{arm}"
                rows.append({
                    "experiment_id": "exp-1", "cell": cell, "block": block, "repeat": repeat, "rate": rate,
                    "arm": arm, "position": position,
                    "previous_arm": order[position - 1] if position else None,
                    "status": "done", "run_id": run_id, "run_dir": f"runs/{run_id}", "plan_hash": "h",
                    "started_utc": "2025-01-01T00:00:00Z", "duration_s": 60.0, "requests": 100, "ok": 100,
                    "j_per_request_all_in": all_in, ATTRIBUTED: all_in - 0.5 * idle,
                    "j_idle_per_request": idle, "j_above_idle_per_request": all_in - idle,
                    "resolution_j_per_request": 0.01, "mean_power_w": 300.0, "energy_j_total": 100 * all_in,
                    "steady_j_per_request_attributed": np.nan, "steady_requests": np.nan,
                    "ttft_p50_s": 0.05 * (1 + rate if not np.isnan(rate) else 1), "ttft_p90_s": 0.08,
                    "e2e_p50_s": 1.2 + rng.normal(0, 0.01), "e2e_p90_s": 1.8, "lateness_p99_ms": 1.0,
                    "realized_rate": rate, "flags": "idle_drift" if arm == LONG and repeat == 1 else "",
                })  # fmt: skip
            block += 1
    cells = pd.DataFrame(rows)
    last = cells["block"] == block - 1
    numbers = [c for c in cells.columns if cells[c].dtype.kind == "f" and c not in ("rate",)]
    cells.loc[last, "status"] = "pending"
    cells.loc[last, numbers] = np.nan
    cells.loc[last, ["run_id", "run_dir"]] = None
    cut = (cells["block"] == 1) & (cells["position"] == 0)
    cells.loc[cut, "status"] = "running"
    cells.loc[cut, numbers] = np.nan
    cells.loc[cut, "flags"] = ""
    cells.loc[(cells["block"] == 0) & (cells["position"] == 1), "ttft_p50_s"] = np.nan
    return cells


def view(rates: list[float] | None, simulated: bool) -> ExperimentView:
    design = {
        "target": "embedded mock server (simulated GPU)" if simulated else "http://gpu-host:8000",
        "arms": [{"name": arm, "schedule": f"fixed:rate={i + 1}"} for i, arm in enumerate(TRUE_J)],
        "rates": rates, "repeats": 3, "order": "random", "cooldown_s": 30.0, "seed": 4242,
        "multiplicity": "bonferroni", "level": 0.95, "simulated": simulated,
    }  # fmt: skip
    return ExperimentView("exp-1", "Arrival shaping", design)


@pytest.fixture(scope="module")
def multi() -> tuple[pd.DataFrame, dict]:
    cells = make_cells([1.0, 2.0, 4.0])
    return cells, experiment_document(cells, view([1.0, 2.0, 4.0], simulated=True))


@pytest.fixture(scope="module")
def single() -> tuple[pd.DataFrame, dict]:
    cells = make_cells([float("nan")], repeat_count=5)
    return cells, experiment_document(cells, view(None, simulated=False))


@pytest.fixture(scope="module")
def multi_html(multi) -> str:
    cells, doc = multi
    return render_experiment_html(doc, cells)


def _block(doc: dict, rate: float | None) -> dict:
    return next(b for b in doc["rates"] if b["rate"] == rate)


def _same(record: dict, expected: object) -> None:
    for key, value in dataclasses.asdict(expected).items():  # type: ignore[call-overload]
        if isinstance(value, tuple):
            value = list(value)
        assert record[key] == value, key


def test_the_document_holds_repeats_figures(multi) -> None:
    cells, doc = multi
    json.dumps(doc, allow_nan=False)  # plain JSON: no NaN, no numpy
    for metric in ["j_per_request_all_in", ATTRIBUTED, "j_idle_per_request", "ttft_p50_s", "e2e_p50_s"]:
        resolution = None if metric.endswith("_s") else "resolution_j_per_request"
        expected = repeats.arm_figures(cells, metric, 0.95, resolution=resolution)
        shown = [a for b in doc["rates"] for a in b["arms"] if metric in a["figures"]]
        assert len(shown) == len(expected)
        for fig in expected:
            arm = next(a for a in _block(doc, fig.rate)["arms"] if a["arm"] == fig.arm)
            _same(arm["figures"][metric], fig)
    for metric in ["j_per_request_all_in", ATTRIBUTED]:
        expected_pairs = repeats.pair_differences(cells, metric, 0.95, "bonferroni")
        got = [p for b in doc["rates"] for p in b["pairs"][metric]]
        assert len(got) == len(expected_pairs)
        for record, pair in zip(
            sorted(got, key=_pair_key), sorted(expected_pairs, key=_pair_key), strict=True
        ):
            _same(record, pair)
    for record, effect in zip(
        doc["positions"], repeats.position_effects(cells, "j_per_request_all_in", relative=True), strict=True
    ):
        _same(record, effect)
    assert doc["counts"] == {"total": 27, "done": 23, "pending": 3, "running": 1}
    assert (
        "steady_j_per_request_attributed" not in FIGURE_METRICS.keys() & doc["rates"][0]["arms"][0]["figures"]
    )
    flagged = next(a for a in _block(doc, 1.0)["arms"] if a["arm"] == LONG)
    assert flagged["flags"] == {"idle_drift": 1}
    missing_ttft = _block(doc, 1.0)["arms"]
    assert min(a["figures"]["ttft_p50_s"]["repeats"] for a in missing_ttft) == 2


def _pair_key(p: object) -> tuple:
    record = p if isinstance(p, dict) else dataclasses.asdict(p)  # type: ignore[call-overload]
    return (record["rate"] if record["rate"] is not None else -1.0, record["a"], record["b"])


def test_verdicts_name_the_winner_and_leave_twins_undecided(multi, multi_html) -> None:
    _, doc = multi
    for block in doc["rates"]:
        for pair, line in zip(block["pairs"]["j_per_request_all_in"], block["verdict"], strict=True):
            if {pair["a"], pair["b"]} == {"steady", "steady-twin"}:
                assert not pair["distinguishable"] and "not distinguishable" in line
            else:
                assert pair["distinguishable"] and pair["winner"] in ("steady", "steady-twin")
                assert line.startswith(f"{pair['winner']} is lower than {LONG}")
    assert "not distinguishable" in multi_html
    assert "steady is lower than" in multi_html and "Bonferroni-corrected" in multi_html
    assert "The unit is the repeat" in multi_html


def test_the_page_shows_design_arms_notices_links_and_plots(multi, multi_html, single) -> None:
    cells, doc = multi
    for arm in TRUE_J:
        assert arm in multi_html
    assert "simulated GPU: figures are the mock's, not a measurement" in multi_html
    assert "Incomplete experiment: 3 of 27 cells pending, 1 cut short" in multi_html
    for key in ("4242", "cool-down between cells (s)", "fixed:rate=1", "random"):
        assert key in multi_html
    for run_dir in cells["run_dir"].dropna():
        assert f'href="{run_dir}/report.html"' in multi_html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', multi_html)
    assert images and all(base64.b64decode(i).startswith(PNG) for i in images)
    embedded = re.search(r'id="joulebench-experiment">(.*?)</script>', multi_html, re.S)
    assert embedded and json.loads(embedded.group(1)) == json.loads(json.dumps(doc))

    single_cells, single_doc = single
    page = render_experiment_html(single_doc, single_cells)
    assert "simulated GPU" not in page and "the arms&#x27; own rates" in page
    with pytest.raises(ValueError, match="not of these cells"):
        render_experiment_html(single_doc, cells)


def test_plots_for_a_sweep_and_for_one_rate(multi, single) -> None:
    _, doc = multi
    images = experiment_images(doc)
    assert [i.file_name for i in images] == ["sweep.png"]
    _, single_doc = single
    one = experiment_images(single_doc)
    assert [i.file_name for i in one] == ["arms_own_rates.png"]
    for image in [*images, *one]:
        assert image.png.startswith(PNG)
    wide = make_cells([0.5, 2.0, 20.0])  # spans 40x: log axis
    fig = sweep(experiment_document(wide, view([0.5, 2.0, 20.0], simulated=False)))
    assert [ax.get_xscale() for ax in fig.axes] == ["log"] * 3
    assert png_bytes(fig).startswith(PNG)


def test_the_terminal_table_fits_100_columns(multi, single) -> None:
    for _, doc in (multi, single):
        console = Console(width=100, record=True)
        console.print(experiment_table(doc))
        text = console.export_text()
        assert "…" not in text
        assert max(len(line) for line in text.splitlines()) <= 100
        for arm in TRUE_J:
            assert arm in text
        assert "not distinguishable" in text and "is lower than" in text
    assert "simulated GPU" in _terminal(multi[1]) and "incomplete: 3 of 27" in _terminal(multi[1])


def _terminal(doc: dict) -> str:
    console = Console(width=100, record=True)
    console.print(experiment_table(doc))
    return console.export_text()
