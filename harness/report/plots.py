"""The report's plots, drawn with matplotlib's object API (no pyplot: no global state, no GUI backend)
and returned as base64 PNG for embedding in a self-contained HTML page.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from harness.energy import Analysis

MAX_BARS = 3000  # request bars drawn under the power plot (an even sample beyond this)
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def arm_colors(names: list[str]) -> dict[str, str]:
    return {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}


def png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def power_timeline(analysis: Analysis, summary: dict, load: pd.DataFrame | None = None) -> Figure | None:
    """Total GPU power over time, with the arm and idle windows, and one bar per request below it.

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
    top.plot(mid, tl["power_w"].to_numpy(), color="black", lw=0.8, label="GPU power (sum)")
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
    top.legend(handles, labels, loc="upper right", fontsize=8)

    req = analysis.requests
    sent = req["sent_ns"] if "sent_ns" in req else pd.Series(dtype="Int64")
    rows = req[sent.notna() & req["done_ns"].notna()] if "done_ns" in req else req.iloc[0:0]
    shown = len(rows)
    if len(rows) > MAX_BARS:
        rows = rows.iloc[np.linspace(0, len(rows) - 1, MAX_BARS).astype(int)]
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
        # Thin bar: waiting for the first token; thick bar: streaming.
        bottom.add_collection(
            LineCollection(np.stack([np.c_[s, y], np.c_[f, y]], axis=1), colors=c, lw=0.6, alpha=0.5)
        )
        bottom.add_collection(LineCollection(np.stack([np.c_[f, y], np.c_[d, y]], axis=1), colors=c, lw=1.6))
        bottom.set_ylim(-1, len(rows))
    bottom.set_xlim(mid.min() if len(mid) else 0, mid.max() if len(mid) else 1)
    note = f" (an even sample of {len(rows):,} of {shown:,})" if shown > len(rows) else ""
    bottom.set_ylabel(f"requests{note}", fontsize=8)
    bottom.set_xlabel("time (s)")
    bottom.set_yticks([])
    return fig


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
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Energy per request against rate (bars: bootstrap 95% CI of the mean)", fontsize=9)
    return fig


def latency_percentiles(summary: dict) -> Figure | None:
    """TTFT, inter-chunk latency and end-to-end latency: p50/p90/p99 per arm."""
    blocks = summary["arms"] or [summary["run"]]
    metrics = [("ttft", "time to first token"), ("itl", "inter-chunk latency"), ("e2e", "end-to-end latency")]
    if not any((b.get("latency_s") or {}).get(m, {}).get("n") for b in blocks for m, _ in metrics):
        return None
    fig = Figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 3)
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
    axes[0].legend(fontsize=7)
    return fig
