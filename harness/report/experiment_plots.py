"""The experiment report's figures, drawn from the experiment document (`experiment_report.py`), never
from the cells themselves, so a plot shows exactly the numbers the tables print.

Object API only (no pyplot: no global state, no GUI backend). `experiment_images` draws every figure
and hands back PNG bytes: the caller writes the files and the page embeds the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.report.experiment_format import level_text
from harness.report.frontier_plot import FrontierMark, draw_frontier
from harness.report.plots import arm_colors

# (key in an arm's figures, panel title, unit scale): seconds are drawn as milliseconds.
_LATENCY_PANELS = [("ttft_p50_s", "TTFT p50 (ms)", 1e3), ("e2e_p50_s", "E2E p50 (ms)", 1e3)]
_LOG_SPAN = 10.0  # rates spanning more than this factor get a log x axis
FRONTIER_FILE = "frontier.png"


@dataclass(frozen=True)
class PlotImage:
    """One drawn figure: the file name the writer gives it, its heading on the page, its PNG bytes."""

    file_name: str
    title: str
    png: bytes


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG; the figure is cleared afterwards (its artists are not needed again)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    fig.clear()
    return buf.getvalue()


def experiment_images(doc: dict[str, Any]) -> list[PlotImage]:
    """A sweep over the offered rates when there are two or more, and a per-arm figure for a rate
    that stands alone (the only offered rate, or the arms' own rates)."""
    numeric = [block for block in doc["rates"] if block["rate"] is not None]
    alone = [block for block in doc["rates"] if block["rate"] is None]
    images = []
    if len(numeric) >= 2:
        title = "Energy and latency against offered rate"
        images.append(PlotImage("sweep.png", title, png_bytes(sweep(doc))))
    else:
        alone = numeric + alone
    for block in alone:
        stem = "arms_own_rates" if block["rate"] is None else f"arms_{block['rate']:g}".replace(".", "_")
        title = f"{doc['metric_label']} per arm at {block['label']}"
        images.append(PlotImage(f"{stem}.png", title, png_bytes(arms_at_rate(doc, block))))
    if doc.get("frontier") and any(block["front"] for block in doc["rates"]):  # no arm with both: nothing
        title = f"Energy-latency frontier: {doc['metric_label']} against {doc['frontier']['latency_label']}"
        images.append(PlotImage(FRONTIER_FILE, title, png_bytes(frontier(doc))))
    return images


def frontier(doc: dict[str, Any]) -> Figure:
    """One panel per rate: each arm at its means (the latency users pay, the verdict's energy) with both
    CIs over repeats as error bars, labelled with its policy; the front by means as a staircase."""
    blocks = doc["rates"]
    latency = doc["frontier"]["latency"]
    cols = min(len(blocks), 2)
    rows = -(-len(blocks) // cols)
    fig = Figure(figsize=(6.8 * cols, 4.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    fig.subplots_adjust(hspace=0.38)  # before drawing: the labels are placed in the panels' final frames
    colors = arm_colors(doc["arms"])
    for ax, block in zip(axes, blocks, strict=False):
        marks = []
        for arm in block["arms"]:
            energy, lat = arm["figures"].get(doc["metric"]), arm["figures"].get(latency)
            if energy and lat and energy["mean"] is not None and lat["mean"] is not None:
                marks.append(FrontierMark(arm["arm"], arm["label"], lat["mean"], energy["mean"],
                                          _ci(lat), _ci(energy)))  # fmt: skip
        ax.set_title(block["label"], fontsize=9)
        ax.set_xlabel(doc["frontier"]["latency_label"])
        ax.set_ylabel(doc["metric_label"])
        draw_frontier(ax, marks, block["front"], colors)
    for ax in axes[len(blocks) :]:
        ax.set_visible(False)
    level = level_text(doc["level"])
    fig.suptitle(f"Means over repeats; bars: {level} CI over repeats; the front is by means", fontsize=9)
    _legend_below(fig, [axes[0]])
    return fig


def _ci(fig: dict[str, Any]) -> tuple[float, float] | None:
    return None if fig["ci"] is None else (fig["ci"][0], fig["ci"][1])


def sweep(doc: dict[str, Any]) -> Figure:
    """Verdict metric, TTFT p50 and E2E p50 against offered rate: one line per arm, shaded CI band."""
    blocks = sorted((b for b in doc["rates"] if b["rate"] is not None), key=lambda b: b["rate"])
    arms = doc["arms"]
    colors = arm_colors(arms)
    panels = [(doc["metric"], doc["metric_label"], 1.0), *_LATENCY_PANELS]
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    rates = np.array([b["rate"] for b in blocks], dtype=np.float64)
    for ax, (metric, title, scale) in zip(axes, panels, strict=True):
        for arm in arms:
            mean, lo, hi = _series(blocks, arm, metric, scale)
            if np.isnan(mean).all():
                continue
            ax.plot(rates, mean, marker="o", ms=4, color=colors[arm], label=arm)
            ax.fill_between(rates, lo, hi, color=colors[arm], alpha=0.18, lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("offered rate (requests/s)")
        ax.set_ylim(bottom=0)
        if rates.min() > 0 and rates.max() / rates.min() > _LOG_SPAN:
            ax.set_xscale("log")
    level = level_text(doc["level"])
    fig.suptitle(f"Mean over repeats; band: {level} CI over repeats", fontsize=9)
    _legend_below(fig, list(axes))
    return fig


def arms_at_rate(doc: dict[str, Any], block: dict[str, Any]) -> Figure:
    """The verdict metric per arm at one rate: mean with its CI over repeats, and every repeat's value."""
    metric = doc["metric"]
    arms = [a["arm"] for a in block["arms"]]
    colors = arm_colors(doc["arms"])
    fig = Figure(figsize=(max(5.0, 1.3 * len(arms) + 2), 4))
    ax = fig.subplots()
    for i, arm in enumerate(arms):
        values = [c[metric] for c in _done_cells(doc, block["rate"], arm) if c[metric] is not None]
        if values:  # a small, fixed spread so repeats with equal values stay visible side by side
            xs = i + 0.18 + np.linspace(-0.06, 0.06, len(values)) if len(values) > 1 else [i + 0.18]
            ax.plot(xs, values, "o", ms=3.5, color=colors[arm], alpha=0.55, ls="none")
        entry = _arm_entry(block, arm, metric)
        if entry is None:
            continue
        ci = entry["ci"]
        err = None if ci is None else [[entry["mean"] - ci[0]], [ci[1] - entry["mean"]]]
        ax.errorbar([i], [entry["mean"]], yerr=err, fmt="D", color=colors[arm], capsize=5, ms=6)
    # Legend entries in neutral grey: the colours name the arms, the markers what was drawn.
    ax.plot([], [], "o", ms=3.5, color="grey", alpha=0.55, ls="none", label="one repeat")
    ax.errorbar([], [], yerr=[], fmt="D", color="grey", capsize=5, ms=6,
                label=f"mean, {level_text(doc['level'])} CI over repeats")  # fmt: skip
    long_names = len(arms) > 3 and max(len(a) for a in arms) > 12
    ax.set_xticks(
        range(len(arms)), arms, rotation=20 if long_names else 0, ha="right" if long_names else "center"
    )
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel(doc["metric_label"])
    ax.set_ylim(bottom=0)
    ax.set_title(block["label"], fontsize=9)
    _legend_below(fig, [ax])
    return fig


def _done_cells(doc: dict[str, Any], rate: float | None, arm: str) -> list[dict[str, Any]]:
    return [c for c in doc["cells"] if c["arm"] == arm and c["rate"] == rate and c["status"] == "done"]


def _arm_entry(block: dict[str, Any], arm: str, metric: str) -> dict[str, Any] | None:
    for entry in block["arms"]:
        if entry["arm"] == arm:
            figure: dict[str, Any] | None = entry["figures"].get(metric)
            return figure
    return None


def _series(
    blocks: list[dict[str, Any]], arm: str, metric: str, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, CI low, CI high per rate; NaN where the arm has no figure (the line breaks there)."""
    out = np.full((3, len(blocks)), np.nan)
    for j, block in enumerate(blocks):
        fig = _arm_entry(block, arm, metric)
        if fig is None or fig["mean"] is None:
            continue
        out[0, j] = fig["mean"] * scale
        if fig["ci"] is not None:
            out[1, j], out[2, j] = fig["ci"][0] * scale, fig["ci"][1] * scale
    return out[0], out[1], out[2]


def _legend_below(fig: Figure, axes: list[Axes]) -> None:
    """One legend under the figure, never over the data (bbox_inches='tight' keeps it in the PNG)."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   fontsize=8, ncol=min(len(entries), 4), frameon=False)  # fmt: skip
