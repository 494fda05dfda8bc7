"""The report's plots, drawn with matplotlib's object API (no pyplot: no global state, no GUI backend)
and returned as base64 PNG for embedding in a self-contained HTML page.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from harness.energy import Analysis

# Past this many requests a bar each is under a pixel high: the panel shows how many were in flight.
REQUEST_BARS_MAX = 300
# The power line's points across the plot: the join's finer bins (analysis.timeline) would draw a solid
# band on a long run; they are averaged to this many, their range shaded behind the line.
POWER_POINTS = 300
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def arm_colors(names: list[str]) -> dict[str, str]:
    return {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}


def png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def power_timeline(analysis: Analysis, summary: dict, load: pd.DataFrame | None = None) -> Figure | None:
    """Total GPU power over time, with the arm and idle windows, and the requests below it: one bar each,
    or past REQUEST_BARS_MAX, each arm's mean count in flight. The legend is below the plot, off the data.

    `load` (`t_ns`, `running`, `waiting`: the server's own metrics, when the run scraped them) adds the
    requests running (the batch) and waiting on the server, on a second axis."""
    tl = analysis.timeline
    if tl.empty:
        return None
    origin = int(tl["t_ns"].iloc[0])
    names = [a["name"] for a in summary["arms"]]
    colors = arm_colors(names)
    fig = Figure(figsize=(11, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2], "hspace": 0.05})
    mid = ((tl["t_ns"].to_numpy() + tl["t_end_ns"].to_numpy()) / 2 - origin) / 1e9
    _power_line(top, mid, tl["power_w"].to_numpy(dtype=np.float64))
    idle_w = summary["idle"].get("power_w")
    if idle_w:
        top.axhline(idle_w, color="grey", ls="--", lw=0.8, label=f"idle {idle_w:.0f} W")
    for arm in analysis.arms:
        a, b = (arm.start_ns - origin) / 1e9, (arm.end_ns - origin) / 1e9
        top.axvspan(a, b, color=colors.get(arm.name, "grey"), alpha=0.08)
        top.text(
            (a + b) / 2,
            1.0,
            arm.name,
            transform=top.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=9,
        )
    if analysis.idle_windows is not None:
        for w in (analysis.idle_windows.pre, analysis.idle_windows.post):
            if w is not None:
                top.axvspan(
                    (w.start_ns - origin) / 1e9,
                    (w.end_ns - origin) / 1e9,
                    color="grey",
                    alpha=0.15,
                    hatch="//",
                )
    top.set_ylabel("power (W)")
    top.set_ylim(bottom=0)
    handles, labels = top.get_legend_handles_labels()
    if load is not None and len(load):
        batch = top.twinx()
        t = (load["t_ns"].to_numpy(dtype=np.float64) - origin) / 1e9
        batch.step(t, load["running"].to_numpy(), where="post", color="tab:green", lw=0.8, alpha=0.8,
                   label="running on the server")  # fmt: skip
        if load["waiting"].notna().any():
            batch.step(t, load["waiting"].to_numpy(), where="post", color="tab:red", lw=0.8, alpha=0.6,
                       label="waiting on the server")  # fmt: skip
        batch.set_ylabel("requests (server metrics)", fontsize=8)
        batch.set_ylim(bottom=0)
        more_handles, more_labels = batch.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels

    req = analysis.requests
    sent = req["sent_ns"] if "sent_ns" in req else pd.Series(dtype="Int64")
    rows = req[sent.notna() & req["done_ns"].notna()] if "done_ns" in req else req.iloc[0:0]
    span = (mid.min(), mid.max())
    if len(rows) > REQUEST_BARS_MAX:
        _in_flight(bottom, rows, origin, span, colors)
    else:
        _request_bars(bottom, rows, origin, colors)
    bottom.set_xlim(*span)
    bottom.set_xlabel("time (s)")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(labels), 5),
               fontsize=8, frameon=False)  # fmt: skip
    return fig


def _power_line(ax: Axes, t: np.ndarray, watts: np.ndarray) -> None:
    """The power line at POWER_POINTS points at most (bin averages: the plotted line keeps the energy),
    the finer bins' range in each shaded behind it."""
    if len(watts) <= POWER_POINTS:
        ax.plot(t, watts, color="black", lw=0.8, label="GPU power (sum)")
        return
    groups = np.array_split(np.arange(len(watts)), POWER_POINTS)
    x = np.array([t[g].mean() for g in groups])
    parts = [watts[g][np.isfinite(watts[g])] for g in groups]
    mean, low, high = (
        np.array([f(v) if len(v) else np.nan for v in parts]) for f in (np.mean, np.min, np.max)
    )
    step = (t[-1] - t[0]) / POWER_POINTS
    ax.fill_between(x, low, high, color="black", alpha=0.15, lw=0, label=f"range within each {step:.2g} s")
    ax.plot(x, mean, color="black", lw=0.9, label=f"GPU power (sum), mean per {step:.2g} s")


def _request_bars(ax: Axes, rows: pd.DataFrame, origin: int, colors: dict[str, str]) -> None:
    """One bar per request, sent to done: thin while it waits for the first token, thick while streaming."""
    if len(rows):
        rows = rows.sort_values("sent_ns")
        y = np.arange(len(rows))
        s = (rows["sent_ns"].to_numpy(dtype=np.float64) - origin) / 1e9
        d = (rows["done_ns"].to_numpy(dtype=np.float64) - origin) / 1e9
        f = (
            rows["first_token_ns"].to_numpy(dtype=np.float64, na_value=np.nan)
            if "first_token_ns" in rows
            else d
        )
        f = np.where(np.isnan(f), d, (f - origin) / 1e9)
        arm_col = rows["arm"].astype(str).to_numpy()
        c = [colors.get(a, "grey") for a in arm_col]
        ax.add_collection(
            LineCollection(np.stack([np.c_[s, y], np.c_[f, y]], axis=1), colors=c, lw=0.6, alpha=0.5)
        )
        ax.add_collection(LineCollection(np.stack([np.c_[f, y], np.c_[d, y]], axis=1), colors=c, lw=1.6))
        ax.set_ylim(-1, len(rows))
    ax.set_ylabel("requests", fontsize=8)
    ax.set_yticks([])


def _in_flight(
    ax: Axes, rows: pd.DataFrame, origin: int, span: tuple[float, float], colors: dict[str, str]
) -> None:
    """Each arm's requests in flight (sent, not done), averaged over POWER_POINTS bins, shaded."""
    edges = np.linspace(span[0], span[1], POWER_POINTS + 1)
    for name, arm in rows.groupby(rows["arm"].astype(str), sort=False):
        sent = (arm["sent_ns"].to_numpy(dtype=np.float64) - origin) / 1e9
        done = (arm["done_ns"].to_numpy(dtype=np.float64) - origin) / 1e9
        level = np.append(mean_in_flight(sent, done, edges), 0.0)
        color = colors.get(str(name), "grey")
        ax.fill_between(edges, level, step="post", color=color, alpha=0.35, lw=0)
        ax.step(edges, level, where="post", color=color, lw=0.8)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"requests in flight\n(mean per {(span[1] - span[0]) / POWER_POINTS:.2g} s)", fontsize=8)


def mean_in_flight(sent: np.ndarray, done: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The mean number of requests in flight in each bin between `edges`: the time integral of the count
    (a step function of the sends and completions) over each bin, divided by its width."""
    t = np.concatenate([sent, done])
    order = np.argsort(t, kind="stable")
    t = t[order]
    level = np.cumsum(np.concatenate([np.ones(len(sent)), -np.ones(len(done))])[order])
    area = np.concatenate([[0.0], np.cumsum(level[:-1] * np.diff(t))])  # the integral up to each event
    return np.diff(np.interp(edges, t, area)) / np.diff(edges)  # linear between events: exact


def energy_distribution(analysis: Analysis, summary: dict) -> Figure | None:
    """J per successful request, per arm: box (5th-95th percentile whiskers) and mean."""
    req = analysis.requests
    names = [a["name"] for a in summary["arms"]] or ["run"]
    data = []
    for name in names:
        rows = (req["status"].astype(str) == "ok") & ~req["warmup"].fillna(False).astype(bool)
        if name != "run":
            rows &= req["arm"].astype(str) == name
        v = req.loc[rows, "energy_j"].to_numpy(dtype=np.float64)
        data.append(v[np.isfinite(v)])
    if not any(len(v) for v in data):
        return None
    fig = Figure(figsize=(max(5, 1.6 * len(names) + 2), 4))
    ax = fig.subplots()
    colors = arm_colors(names)
    positions = [i for i, v in enumerate(data) if len(v)]
    mean_style = {"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black"}
    box = ax.boxplot(
        [data[i] for i in positions], positions=positions, whis=(5, 95), showfliers=False, patch_artist=True,
        widths=0.5, showmeans=True, meanprops=mean_style,
    )  # fmt: skip
    for patch, i in zip(box["boxes"], positions, strict=True):
        patch.set_facecolor(colors[names[i]])
        patch.set_alpha(0.6)
    ax.set_xticks(range(len(names)), [f"{n}\n(n={len(v):,})" for n, v in zip(names, data, strict=True)])
    ax.set_ylabel("J per successful request")
    positive = np.concatenate([v[v > 0] for v in data if len(v)]) if data else np.zeros(0)
    if len(positive) and positive.max() / max(positive.min(), 1e-12) > 100:
        ax.set_yscale("log")
    ax.set_title("Energy per request (box: quartiles, whiskers: 5th-95th percentile, ◇ mean)", fontsize=9)
    return fig


def energy_vs_rate(summary: dict) -> Figure | None:
    """Mean J/request (with its 95% CI) and all-in J/request against each arm's realized rate."""
    points = []
    for arm in summary["arms"]:
        rate = (arm.get("rate") or {}).get("realized")
        jpr = arm.get("j_per_request") or {}
        if rate is None or jpr.get("mean") is None:
            continue
        points.append(
            (arm["name"], rate, jpr["mean"], jpr.get("ci95"), (arm.get("all_in") or {}).get("j_per_request"))
        )
    if not points:
        return None
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    colors = arm_colors([a["name"] for a in summary["arms"]])
    for name, rate, mean, ci, all_in in points:
        err = None if ci is None else [[mean - ci[0]], [ci[1] - mean]]
        ax.errorbar(
            [rate], [mean], yerr=err, fmt="o", color=colors[name], capsize=4, label=f"{name}: attributed"
        )
        if all_in is not None:
            ax.plot(
                [rate],
                [all_in],
                marker="s",
                mfc="none",
                color=colors[name],
                ls="none",
                label=f"{name}: all-in",
            )
        ax.annotate(name, (rate, mean), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("realized request rate (requests/s)")
    ax.set_ylabel("J per successful request")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)  # off the points
    ax.set_title("Energy per request against rate (bars: bootstrap 95% CI of the mean)", fontsize=9)
    return fig


def latency_percentiles(summary: dict) -> Figure | None:
    """TTFT, inter-chunk latency and end-to-end latency: p50/p90/p99 per arm."""
    blocks = summary["arms"] or [summary["run"]]
    metrics = [("ttft", "time to first token"), ("itl", "inter-chunk latency"), ("e2e", "end-to-end latency")]
    if not any((b.get("latency_s") or {}).get(m, {}).get("n") for b in blocks for m, _ in metrics):
        return None
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.3})  # room for each panel's "ms"
    width = 0.8 / len(blocks)
    colors = arm_colors([b["name"] for b in blocks])
    for ax, (key, title) in zip(axes, metrics, strict=True):
        for i, b in enumerate(blocks):
            stats = (b.get("latency_s") or {}).get(key) or {}
            vals = [stats.get(p) for p in ("p50", "p90", "p99")]
            xs = np.arange(3) + (i - (len(blocks) - 1) / 2) * width
            ax.bar(
                xs,
                [np.nan if v is None else v * 1e3 for v in vals],
                width,
                color=colors[b["name"]],
                label=b["name"],
            )
        ax.set_xticks(range(3), ["p50", "p90", "p99"])
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("ms")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=len(labels),
        fontsize=8,
        frameon=False,
    )  # below the bars, never over them
    return fig
