"""The report of an experiment: arms at one or more offered rates, repeated, one measured run per cell.

`experiment_document` turns the tidy cells table into the document saved as experiment_summary.json;
the page (`render_experiment_html`) and the terminal (`experiment_table`) only present it, so
every number they show is the document's. The statistics are `harness.energy.repeats`': the unit is
the repeat (one value per cell), never the request, so the intervals say how much a figure moves when
the whole run is done again.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from harness.energy import repeats
from harness.report.experiment_format import esc as _e
from harness.report.experiment_format import images_html, level_text, mean_ci, pct
from harness.report.experiment_frontier import (
    GOODPUT,
    GOODPUT_LABEL,
    LATENCY,
    LATENCY_LABEL,
    USER_FIGURES,
    frontier_records,
    is_shaped,
    policies_html,
    terminal_notes,
)
from harness.report.experiment_plots import FRONTIER_FILE, PlotImage, experiment_images
from harness.report.format import fmt_ci, fmt_num, fmt_pct
from harness.report.frontier import front_mark

EXPERIMENT_SCHEMA_VERSION = 1
ATTRIBUTED = "j_per_request_attributed"
# Figures per arm and rate: column -> label. Latencies are in seconds in the cells and the document.
FIGURE_METRICS = {
    "j_per_request_all_in": "all-in J/request",
    ATTRIBUTED: "attributed J/request",
    "j_above_idle_per_request": "above-idle J/request",
    "j_idle_per_request": "idle J/request",
    "steady_j_per_request_attributed": "steady-state attributed J/request",
    "ttft_p50_s": "TTFT p50",
    "e2e_p50_s": "E2E p50",
}
# Listed even when every value is missing (the steady-state figure only when a window was asked for).
_FIXED = set(FIGURE_METRICS) - {"steady_j_per_request_attributed"}
_ENERGY = {m for m in FIGURE_METRICS if m.startswith(("j_", "steady_j_"))}
_LABELS = {**FIGURE_METRICS, **USER_FIGURES, GOODPUT: GOODPUT_LABEL}
_RESOLUTION = "resolution_j_per_request"  # the counter's step, as J per request, of each cell
_STATUSES = ("done", "pending", "running")


@dataclass(frozen=True)
class ExperimentView:
    """What the report needs besides the cells: names and the resolved settings (a plain dict:
    target, arms and schedules, rates, repeats, order, cooldown_s, seed, multiplicity, level,
    simulated), and the metric the verdict is about."""

    experiment_id: str
    title: str
    design: dict[str, Any]
    metric: str = "j_per_request_all_in"
    arm_order: tuple[str, ...] = ()  # how the experiment lists its arms (default: first to run)


def experiment_document(cells: pd.DataFrame, view: ExperimentView) -> dict[str, Any]:
    """experiment_summary.json: per rate, per arm figures over repeats, pairwise differences on the
    verdict metric and on attributed energy, verdict lines; position effects; every cell."""
    level = float(view.design.get("level", 0.95))
    multiplicity = view.design.get("multiplicity", "bonferroni")
    cells = cells.sort_values("cell", kind="stable")
    # Figures and pairs follow the arms' first appearance: in the experiment's own order when given.
    rank = {arm: i for i, arm in enumerate(view.arm_order)}
    by_arm = cells.iloc[
        sorted(range(len(cells)), key=lambda i: rank.get(str(cells["arm"].iloc[i]), len(rank)))
    ]
    done = by_arm[by_arm["status"] == "done"]  # a pending or cut-short cell has no figure to count
    left_out = repeats.excluded(done)
    arms = _arms(by_arm)  # one order at every rate
    shaped = is_shaped(arms)
    metrics = [m for m in FIGURE_METRICS if m in cells and (m in _FIXED or done[m].notna().any())]
    metrics += [] if view.metric in metrics else [view.metric]
    # What users pay for a policy only where some arm has one; goodput wherever an SLO gave it.
    metrics += [m for m in USER_FIGURES if shaped and m in cells]
    metrics += [GOODPUT] if GOODPUT in cells and done[GOODPUT].notna().any() else []
    figures = {
        m: repeats.arm_figures(done, m, level, resolution=_RESOLUTION if m in _ENERGY else None)
        for m in metrics
    }
    # With policies, the latency of the frontier is paired as the energy is: a domination is resolved
    # by the repeats only when both differences' intervals exclude zero (experiment_frontier.py).
    pair_metrics = list(dict.fromkeys([view.metric, ATTRIBUTED, *([LATENCY] if shaped else [])]))
    pairs = {m: repeats.pair_differences(done, m, level, multiplicity) for m in pair_metrics}
    positions = repeats.position_effects(done, view.metric, level, relative=True)
    records = cells.to_dict("records")
    doc: dict[str, Any] = {
        "schema_version": EXPERIMENT_SCHEMA_VERSION,
        "experiment_id": view.experiment_id,
        "title": view.title,
        "design": _plain(view.design),
        "simulated": bool(view.design.get("simulated", False)),
        "metric": view.metric,
        "metric_label": _LABELS.get(view.metric, view.metric),
        "level": level,
        "multiplicity": multiplicity,
        "counts": _counts(cells),
        # Done cells without the verdict's figure (no power source, no successful request): said
        # where the figures are shown, so an empty verdict never reads as "no difference".
        "cells_without_metric": int((done[view.metric].isna().to_numpy() & ~left_out).sum()),
        # Done cells whose arm was flagged by one of repeats.EXCLUDING_FLAGS: no figure or verdict
        # uses them, whatever their values.
        "cells_excluded": int(left_out.sum()),
        "excluding_flags": list(repeats.EXCLUDING_FLAGS),
        "arms": arms,
        "rates": [],
        "positions": [_plain(dataclasses.asdict(p)) for p in positions],
        "cells": [_cell_record({str(k): v for k, v in row.items()}, view.metric) for row in records],
    }
    if shaped:  # some arm is `<schedule>+<policy>`; an unshaped experiment's document stays as it was
        doc["shaped"] = True
        doc["frontier"] = {
            "energy": view.metric,
            "energy_label": doc["metric_label"],
            "latency": LATENCY,
            "latency_label": LATENCY_LABEL,
            "basis": "means over repeats",
            "slo_ttft_s": _plain(view.design.get("slo_ttft_s")),
            "slo_e2e_s": _plain(view.design.get("slo_e2e_s")),
        }
    for rate in _rates(cells):
        at = cells[_rate_mask(cells, rate)]
        rate_pairs = {m: [_pair_record(p) for p in pairs[m] if _key(p.rate) == rate] for m in pair_metrics}
        verdict_pairs = [p for p in pairs[view.metric] if _key(p.rate) == rate]
        present = set(at["arm"].astype(str))
        arm_records = [_arm_record(at, arm, rate, figures, view.metric) for arm in arms if arm in present]
        block: dict[str, Any] = {
            "rate": rate,
            "label": rate_label(rate),
            "arms": arm_records,
            "pairs": rate_pairs,
            "widest_half_width": _plain(repeats.widest_half_width(verdict_pairs)),
            "verdict": [_verdict_line(p) for p in rate_pairs[view.metric]],
        }
        if shaped:
            block["front"], standing = frontier_records(arm_records, rate_pairs, view.metric)
            for arm_record in arm_records:
                arm_record.update(standing[arm_record["arm"]])
        doc["rates"].append(block)
    return doc


def rate_label(rate: float | None) -> str:
    return "the arms' own rates" if rate is None else f"{fmt_num(rate, digits=3)} req/s"


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    status = frame["status"].astype(str)
    return {"total": len(frame), **{s: int((status == s).sum()) for s in _STATUSES}}


def _key(rate: Any) -> float | None:
    """The rate a group is known by: None for the arms' own rates (NaN in the cells)."""
    return None if rate is None or (isinstance(rate, float) and math.isnan(rate)) else float(rate)


def _rates(cells: pd.DataFrame) -> list[float | None]:
    keys = {_key(float(r)) for r in cells["rate"]}
    numeric = sorted(k for k in keys if k is not None)
    return [*numeric, None] if None in keys else [*numeric]


def _rate_mask(cells: pd.DataFrame, rate: float | None) -> pd.Series:
    return cells["rate"].isna() if rate is None else cells["rate"] == rate


def _arms(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["arm"].astype(str)))


def _arm_record(
    at: pd.DataFrame, arm: str, rate: float | None, figures: dict[str, list[Any]], metric: str
) -> dict[str, Any]:
    mine = at[at["arm"].astype(str) == arm]
    here = [f for found in figures.values() for f in found if f.arm == arm and _key(f.rate) == rate]
    figs = {f.metric: _figure_record(f) for f in here}
    flags: Counter[str] = Counter()
    for text in mine["flags"].fillna(""):
        flags.update({f.strip() for f in str(text).split(",") if f.strip()})
    done = mine[mine["status"].astype(str) == "done"]
    return {
        "arm": arm,
        "cells": {**_counts(mine), "excluded": int(repeats.excluded(done).sum())},
        "figures": figs,
        "cv": (figs.get(metric) or {}).get("cv"),
        "flags": dict(sorted(flags.items())),
    }


def _figure_record(fig: Any) -> dict[str, Any]:
    record: dict[str, Any] = _plain(dataclasses.asdict(fig))
    ci = record["ci"]
    record["half_width"] = None if ci is None else (ci[1] - ci[0]) / 2
    return record


def _pair_record(pair: Any) -> dict[str, Any]:
    record: dict[str, Any] = _plain(dataclasses.asdict(pair))
    ci = record["ci"]
    record["distinguishable"] = ci is not None and (ci[0] > 0 or ci[1] < 0)
    return record


def _verdict_line(p: dict[str, Any]) -> str:
    a, b, ci = p["a"], p["b"], p["ci"]
    interval = f"{level_text(p['level'])} CI {fmt_ci(ci)} J"
    if p["distinguishable"]:
        winner = p["winner"] or (a if p["mean"] < 0 else b)
        loser = b if winner == a else a
        return (
            f"{winner} is lower than {loser} by {fmt_num(abs(p['mean']), ' J')}/request"
            f"{_share_of_loser(p, loser)} ({a} − {b}: {interval})"
        )
    if ci is None:
        return f"{a} vs {b}: not distinguishable ({p['repeats']} paired repeat(s), too few for an interval)"
    return f"{a} vs {b}: not distinguishable ({a} − {b}: {interval}, includes zero)"


def _share_of_loser(p: dict[str, Any], loser: str) -> str:
    """The saving as a share of what the costlier arm costs: 'by 2.1 J/request, 15% less than b'."""
    if not p["relative"]:
        return ""
    b_mean = p["mean"] / p["relative"]
    loser_mean = b_mean + p["mean"] if loser == p["a"] else b_mean
    return f", {abs(p['mean']) / loser_mean:.0%} less than {loser}" if loser_mean > 0 else ""


def _cell_record(row: dict[str, Any], metric: str) -> dict[str, Any]:
    keep = ["cell", "block", "repeat", "rate", "position", "arm", "previous_arm", "status", "run_id",
            "run_dir", "started_utc", "duration_s", "requests", "ok", "j_per_request_all_in", ATTRIBUTED,
            metric]  # fmt: skip
    record = {k: _plain(row.get(k)) for k in dict.fromkeys(keep)}
    record["rate"] = _key(row.get("rate"))
    record["flags"] = [f.strip() for f in str(row.get("flags") or "").split(",") if f.strip()]
    return record


def _plain(value: Any) -> Any:
    """JSON's types: NaN and infinities become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, np.bool_)):
        return None if value is None else bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return value
    return None if pd.isna(value) else str(value)


# --- the page -------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin-bottom:.3em}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child,td.l,th.l{text-align:left}
.banner{padding:.6em 1em;margin:.8em 0;border-radius:4px;font-weight:600}
.sim{background:#fff4d6;border:1px solid #e0b23c} .incomplete{background:#fde8e8;border:1px solid #d66}
.yes{color:#0a6b2d;font-weight:600} .no{color:#666}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#666;font-size:.85em}
tr.front td{background:#eef7f0}
"""
_DESIGN_LABELS = {
    "target": "target", "arms": "arms and schedules", "rates": "offered rates (req/s)",
    "repeats": "repeats", "order": "arm order", "cooldown_s": "cool-down between cells (s)",
    "seed": "seed", "multiplicity": "multiplicity correction", "level": "confidence level",
}  # fmt: skip
_DESIGN_NONE = {"rates": "the arms' own rates"}


def render_experiment_html(
    doc: dict[str, Any], cells: pd.DataFrame, images: Sequence[PlotImage] | None = None
) -> str:
    """The self-contained page. `images`: the figures already drawn (so the page embeds the bytes the
    caller wrote as files); drawn here when not given. `cells` must be the cells the document was
    made from: a document of other cells (a stale summary) is refused rather than shown."""
    _check_same_cells(doc, cells)
    images = experiment_images(doc) if images is None else images
    counts = doc["counts"]
    banners = ""
    if doc["simulated"]:
        banners += '<p class="banner sim">simulated GPU: figures are the mock\'s, not a measurement</p>'
    if doc["cells_without_metric"]:
        banners += (
            f'<p class="banner incomplete">{doc["cells_without_metric"]} of {counts["done"]} done cells '
            f"have no {_e(doc['metric_label'])} (no power source, or no successful request): "
            "see their flags.</p>"
        )
    if doc.get("cells_excluded"):
        banners += f'<p class="banner incomplete">{_e(_excluded_text(doc))}</p>'
    if counts["pending"] or counts["running"]:
        banners += (
            f'<p class="banner incomplete">Incomplete experiment: {counts["pending"]} of {counts["total"]} '
            f"cells pending, {counts['running']} cut short; the figures are over the {counts['done']} done "
            "cells only.</p>"
        )
    frontier = [img for img in images if img.file_name == FRONTIER_FILE]  # shown with the policies
    sections = [
        "<h2>Verdict</h2>" + "".join(_verdict_html(doc, block) for block in doc["rates"]),
        "<h2>Arms</h2>" + "".join(_arm_table(doc, block) for block in doc["rates"]),
        policies_html(doc, frontier) if doc.get("shaped") else "",
        "<h2>Pairwise differences</h2>" + "".join(_pair_table(doc, block) for block in doc["rates"]),
        "<h2>Order effects</h2>" + _position_table(doc),
        images_html([img for img in images if img not in frontier]),
        "<h2>Every cell</h2>" + _cells_table(doc),
    ]
    summary_json = json.dumps(doc).replace("</", "<\\/")  # cannot close the script element early
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>joulebench experiment {_e(doc["experiment_id"])}</title>
<style>{_CSS}</style></head><body>
<h1>{_e(doc["title"])}</h1>
<p class="meta">experiment {_e(doc["experiment_id"])} · {counts["done"]} of {counts["total"]} cells done
 · verdict metric <b>{_e(doc["metric_label"])}</b></p>
{banners}
<h2>What was measured</h2>
{_design_table(doc["design"])}
{"".join(sections)}
<script type="application/json" id="joulebench-experiment">{summary_json}</script>
</body></html>
"""


def _excluded_text(doc: dict[str, Any]) -> str:
    return (
        f"{doc['cells_excluded']} of {doc['counts']['done']} done cells left out of every figure and "
        "verdict: their run flagged the arm "
        + ", ".join(f"{code} ({repeats.EXCLUDING_FLAGS.get(code, '?')})" for code in doc["excluding_flags"])
        + "; see their flags"
    )


def _check_same_cells(doc: dict[str, Any], cells: pd.DataFrame) -> None:
    ordered = cells.sort_values("cell", kind="stable")
    theirs = list(zip(ordered["cell"].astype(int), ordered["status"].astype(str), strict=True))
    ours = [(c["cell"], c["status"]) for c in doc["cells"]]
    if theirs != ours:
        raise ValueError(f"experiment {doc['experiment_id']}: the summary document is not of these cells")


def _design_table(design: dict[str, Any]) -> str:
    keys = [k for k in _DESIGN_LABELS if k in design] + [
        k for k in design if k not in _DESIGN_LABELS and k != "simulated"
    ]
    rows = "".join(
        f'<tr><th class="l">{_e(_DESIGN_LABELS.get(k, k))}</th>'
        f'<td class="l">{_design_value(design[k], _DESIGN_NONE.get(k, "-"))}</td></tr>'
        for k in keys
    )
    return f"<table>{rows}</table>"


def _design_value(value: Any, none: str = "-") -> str:
    """Nested settings one per line (`name: schedule`), scalars as they are, `none` for None."""
    if value is None or value == {} or value == []:
        return _e(none)
    if isinstance(value, dict):
        return "<br>".join(f"{_e(k)}: {_design_value(v)}" for k, v in value.items())
    if isinstance(value, list):
        if all(isinstance(v, dict) for v in value):
            return "<br>".join(", ".join(f"{_e(k)}: {_inline(v)}" for k, v in item.items()) for item in value)
        if all(isinstance(v, str) for v in value):  # schedules may hold commas: one per line
            return "<br>".join(_e(v) for v in value)
        return _e(", ".join("the arms' own" if v is None else str(v) for v in value))
    return _e(value)


def _inline(value: Any) -> str:
    return _e(value if isinstance(value, str) else json.dumps(value))


def _verdict_html(doc: dict[str, Any], block: dict[str, Any]) -> str:
    pairs = block["pairs"][doc["metric"]]
    n = max((a["figures"].get(doc["metric"], {}).get("repeats", 0) for a in block["arms"]), default=0)
    each = level_text(pairs[0]["level"]) if pairs else level_text(doc["level"])
    correction = (
        f"{level_text(doc['level'])} simultaneous confidence, Bonferroni-corrected over the {len(pairs)} "
        f"pairs at this rate (each pair's interval at {each})"
        if doc["multiplicity"] == "bonferroni"
        else f"{level_text(doc['level'])} confidence per pair, not corrected for multiple comparisons"
    )
    widest = block["widest_half_width"]
    reach = (
        ""
        if widest is None
        else f" With these repeats the widest interval reaches ±{fmt_num(widest, ' J')}: a smaller true "
        "difference would not show."
    )
    lines = "".join(
        f'<li class="{"yes" if p["distinguishable"] else "no"}">{_e(line)}</li>'
        for p, line in zip(pairs, block["verdict"], strict=True)
    )
    found = sum(p["distinguishable"] for p in pairs)
    return (
        f"<h3>At {_e(block['label'])}: {found} of {len(pairs)} pairs distinguishable</h3>"
        f'<p class="note">Metric: {_e(doc["metric_label"])}. The unit is the repeat: each cell (one arm, '
        f"one repeat) is one value, differences are taken between arms within a repeat (up to {n} "
        f"repeats). Intervals: {correction}.{reach}</p>"
        + (f"<ul>{lines}</ul>" if lines else '<p class="note">Fewer than two arms with figures.</p>')
    )


def _arm_table(doc: dict[str, Any], block: dict[str, Any]) -> str:
    level = level_text(doc["level"])
    head = ["arm", "repeats", f"all-in J/request [{level} CI]", f"attributed J/request [{level} CI]",
            "idle J/request", "above-idle J/request", "CV between repeats", "counter resolution (J/request)",
            "TTFT p50 (ms)", "E2E p50 (ms)", "cells done / pending / cut short", "cells left out",
            "flags (cells)"]  # fmt: skip
    steady = "steady_j_per_request_attributed"
    with_steady = any(steady in arm["figures"] for arm in block["arms"])
    if with_steady:  # reported apart, beside the whole-arm figures it leaves ramp-up and drain out of
        head.insert(4, f"steady-state attributed J/request [{level} CI]")
    # Goodput under an SLO here when no arm is shaped (with policies, the policies' table has it).
    with_goodput = not doc.get("shaped") and any(GOODPUT in arm["figures"] for arm in block["arms"])
    if with_goodput:
        head.insert(-3, f"{GOODPUT_LABEL} [{level} CI]")
    rows = []
    for arm in block["arms"]:
        f = arm["figures"]
        main = f.get(doc["metric"]) or {}
        c = arm["cells"]
        cols = [
            arm["arm"], main.get("repeats", 0), mean_ci(f.get("j_per_request_all_in")),
            mean_ci(f.get(ATTRIBUTED)), mean_ci(f.get("j_idle_per_request")),
            mean_ci(f.get("j_above_idle_per_request")), pct(arm["cv"]),
            fmt_num(main.get("resolution"), digits=3), mean_ci(f.get("ttft_p50_s"), 1e3),
            mean_ci(f.get("e2e_p50_s"), 1e3), f"{c['done']} / {c['pending']} / {c['running']}",
            c.get("excluded", 0), ", ".join(f"{k} ({v})" for k, v in arm["flags"].items()) or "-",
        ]  # fmt: skip
        if with_steady:
            cols.insert(4, mean_ci(f.get(steady)))
        if with_goodput:
            cols.insert(-3, mean_ci(f.get(GOODPUT), 100))
        rows.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in cols) + "</tr>")
    return (
        f"<h3>At {_e(block['label'])}</h3><table><tr>{''.join(f'<th>{_e(h)}</th>' for h in head)}</tr>"
        + "".join(rows)
        + "</table>"
        + f'<p class="note">Means over repeats. The CV (sd / mean between repeats) is of the verdict '
        f"metric, {_e(doc['metric_label'])}. Idle and above-idle energy per request are shown apart: "
        "their sum is the all-in figure.</p>"
    )


def _pair_table(doc: dict[str, Any], block: dict[str, Any]) -> str:
    head = ["metric", "a", "b", "repeats", "mean a − b", "CI", "level", "relative (a − b) / b", "verdict"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(v)}</td>" for v in _pair_columns(metric, p)) + "</tr>"
        for metric, pairs in block["pairs"].items()
        for p in pairs
    )
    if not rows:
        return f'<h3>At {_e(block["label"])}</h3><p class="note">Fewer than two arms with figures.</p>'
    return (
        f"<h3>At {_e(block['label'])}</h3><table><tr>{''.join(f'<th>{_e(h)}</th>' for h in head)}</tr>"
        f"{rows}</table>"
    )


def _pair_columns(metric: str, p: dict[str, Any]) -> list[Any]:
    return [_LABELS.get(metric, metric), p["a"], p["b"], p["repeats"], fmt_num(p["mean"]),
            fmt_ci(p["ci"]), level_text(p["level"]), fmt_pct(p["relative"]), p["verdict"]]  # fmt: skip


def _pct_ci(ci: list[float] | None) -> str:
    return "–" if ci is None else f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def _position_table(doc: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{p['position']}</td><td>{p['cells']}</td><td>{_e(fmt_pct(p['mean']))}</td>"
        f"<td>{_e(_pct_ci(p['ci']))}</td></tr>"
        for p in doc["positions"]
    )
    return (
        "<table><tr><th>position in block (0: first)</th><th>cells</th>"
        f"<th>mean residual, share of the arm's mean ({_e(doc['metric_label'])})</th>"
        f"<th>{level_text(doc['level'])} CI</th></tr>{rows}</table>"
        "<p class=\"note\">A residual is a cell's value minus its arm's mean at that rate, as a share "
        "of that mean (arms of 2 J and 90 J a request pool on one scale); if every "
        "position's interval covers zero, the order the arms ran in (warm-up, heat left by the previous "
        "arm) did not measurably shift the figures.</p>"
    )


def _cells_table(doc: dict[str, Any]) -> str:
    head = ["cell", "repeat", "rate", "position", "arm", "status", "all-in J/request", "flags", "run"]
    rows = []
    for c in doc["cells"]:
        link = (
            f'<a href="{_e(c["run_dir"])}/report.html">{_e(c["run_id"] or c["run_dir"])}</a>'
            if c["run_dir"]
            else "-"
        )
        cols = [c["cell"], c["repeat"], rate_label(c["rate"]), c["position"], c["arm"], c["status"],
                fmt_num(c["j_per_request_all_in"]), ", ".join(c["flags"]) or "-"]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in cols) + f"<td>{link}</td></tr>")
    return f"<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(rows)}</table>"


# --- the terminal ---------------------------------------------------------------------------------


def experiment_table(doc: dict[str, Any]) -> Table:
    """Per rate, each arm's verdict metric (mean ± CI half-width over repeats), CV and latencies (with
    policies: the hold and the users' latencies from arrival, and whether the arm is on the front);
    under the table, the notices (simulated, incomplete), which pairs are distinguishable at each rate
    and, with policies, the front and the dominations."""
    level = level_text(doc["level"])
    table = Table(
        title=f"{escape(doc['title'])} · {doc['metric_label']}, mean ± {level} CI over repeats",
        title_justify="left",
        caption="\n".join(_terminal_notes(doc)),
        caption_justify="left",
    )
    # Numbers never wrap; a name too long for the rest folds rather than ending in an ellipsis.
    table.add_column("arm", overflow="fold")
    shaped = bool(doc.get("shaped"))
    goodput = any(GOODPUT in a["figures"] for b in doc["rates"] for a in b["arms"])
    latencies = _USER_COLUMNS if shaped else _SERVER_COLUMNS
    extra = (["goodput %"] if goodput else []) + (["front"] if shaped else [])
    for col in ("n", "J/req ±CI", "CV", "attrib. J", *(head for head, _, _ in latencies), *extra):
        table.add_column(col, justify="right", no_wrap=True)
    for i, block in enumerate(doc["rates"]):
        if i:
            table.add_section()
        table.add_row(f"[bold]at {escape(block['label'])}[/bold]")
        for arm in block["arms"]:
            f = arm["figures"]
            main = f.get(doc["metric"]) or {}
            cols = [escape(arm["arm"]), str(main.get("repeats", 0)), _pm(main), pct(arm["cv"]),
                    fmt_num((f.get(ATTRIBUTED) or {}).get("mean"))]  # fmt: skip
            cols += [_pm(f.get(m) or {}) if m == LATENCY else _scaled(f.get(m), k) for _, m, k in latencies]
            if goodput:
                cols.append(_scaled(f.get(GOODPUT), 100))
            if shaped:
                cols.append(front_mark(arm["on_front"], short=True))
            table.add_row(*cols)
    return table


# The terminal's latency columns, (heading, figure, scale to the heading's unit): the server's p50s; with
# policies what users pay instead, from their arrival (the frontier's latency with its CI).
_SERVER_COLUMNS = [("TTFT ms", "ttft_p50_s", 1e3), ("E2E ms", "e2e_p50_s", 1e3)]
_USER_COLUMNS = [("hold p99 ms", "hold_p99_ms", 1.0), ("user TTFT p99 s ±CI", LATENCY, 1.0),
                 ("user E2E p99 s", "user_e2e_p99_s", 1.0)]  # fmt: skip


def _terminal_notes(doc: dict[str, Any]) -> list[str]:
    counts = doc["counts"]
    notes = []
    if doc["simulated"]:
        notes.append("[yellow]simulated GPU: figures are the mock's, not a measurement[/yellow]")
    if doc["cells_without_metric"]:
        notes.append(
            f"[bold red]{doc['cells_without_metric']} of {counts['done']} done cells have no "
            f"{escape(doc['metric_label'])} (no power source, or no successful request)[/bold red]"
        )
    if doc.get("cells_excluded"):
        notes.append(f"[bold red]{escape(_excluded_text(doc))}[/bold red]")
    if counts["pending"] or counts["running"]:
        notes.append(
            f"[bold red]incomplete: {counts['pending']} of {counts['total']} cells pending, "
            f"{counts['running']} cut short[/bold red]"
        )
    correction = "Bonferroni" if doc["multiplicity"] == "bonferroni" else "no multiplicity correction"
    notes.append(f"Which pairs are distinguishable (unit: the repeat; {correction}):")
    for block in doc["rates"]:
        notes.append(
            f"at {escape(block['label'])}:"
            + ("" if block["verdict"] else " fewer than two arms with figures")
        )
        for p, line in zip(block["pairs"][doc["metric"]], block["verdict"], strict=True):
            style = "green" if p["distinguishable"] else "dim"
            notes.append(f"  [{style}]{escape(line)}[/{style}]")
    return notes + (terminal_notes(doc) if doc.get("shaped") else [])


def _pm(fig: dict[str, Any]) -> str:
    if fig.get("mean") is None:
        return "-"
    hw = fig.get("half_width")
    return fmt_num(fig["mean"]) + ("" if hw is None else f" ±{fmt_num(hw, digits=2)}")


def _scaled(fig: dict[str, Any] | None, scale: float) -> str:
    return "-" if not fig or fig["mean"] is None else fmt_num(fig["mean"] * scale)
