"""`report.html`: one self-contained page (inline CSS, plots as base64 PNG, the summary embedded as JSON).

Every number on the page is read from the summary document, so the page and summary.json agree. What was
measured (target, engine, GPUs, host, plan, command line) comes first, from the run's manifest
(run_facts.py), under a banner when the GPU was the mock's simulated one.
"""

from __future__ import annotations

import html
import json

import pandas as pd

from harness.energy import Analysis
from harness.report import frontier_plot, plots
from harness.report.client_cells import client_cell
from harness.report.format import fmt_ci, fmt_num, fmt_power_lag
from harness.report.frontier import front_mark
from harness.report.gpu_table import GPU_COLUMNS, gpu_rows
from harness.report.run_facts import RunFacts
from harness.report.terminal import (
    NO_VERDICT,
    all_in_cell,
    arm_front,
    cheapest_arm,
    error_codes,
    goodput_cell,
)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:right} th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}
.flag-error{color:#b00020;font-weight:600} .flag-warning{color:#a65e00} .flag-info{color:#555}
.verdict{font-weight:600}
.banner{padding:.6em 1em;margin:.8em 0;border-radius:4px;font-weight:600}
.sim{background:#fff4d6;border:1px solid #e0b23c}
table.facts th{text-align:left;background:none;font-weight:600} table.facts td{text-align:left}
code{font-size:.95em;word-break:break-all}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#666;font-size:.85em}
tr.bad td{color:#b00020}
"""

# (label, path into a block, unit/format)
_ROWS = [
    ("successful / planned requests", None, "requests"),
    ("J per request: mean", ("j_per_request", "mean"), "j"),
    ("J per request: 95% CI of the mean", ("j_per_request", "ci95"), "ci"),
    ("J per request: p50", ("j_per_request", "p50"), "j"),
    ("J per request: p90", ("j_per_request", "p90"), "j"),
    ("J per request: p99", ("j_per_request", "p99"), "j"),
    ("attributed Wh per request: mean", ("wh_per_request", "mean"), "wh"),
    ("all-in J per request (window total / successes)", ("all_in", "j_per_request"), "all_in"),
    ("all-in J per request = idle (the idle floor's share)", ("all_in_split", "idle_j_per_request"), "split"),
    ("+ above idle", ("all_in_split", "above_idle_j_per_request"), "split"),
    ("J per output token", ("j_per_output_token",), "j"),
    ("J per prompt token", ("j_per_prompt_token",), "j"),
    ("energy in window (J)", ("energy_j_total",), "total"),
    ("power coverage of the window (min over GPUs)", ("power_coverage", "min"), "pct"),
    ("attributed (J)", ("energy_j_attributed",), "j"),
    ("unattributed (J)", ("energy_j_unattributed",), "j"),
    ("mean power (W)", ("mean_power_w",), "w"),
    ("window (s)", ("window", "duration_s"), "s"),
    ("throughput (requests/s)", ("throughput", "requests_per_s"), "r"),
    ("output tokens/s", ("throughput", "output_tokens_per_s"), "r"),
    ("rate: target / planned / realized", None, "rate"),
    ("TTFT p50 / p99 (ms)", ("latency_s", "ttft"), "lat"),
    ("inter-chunk p50 / p99 (ms)", ("latency_s", "itl"), "lat"),
    ("E2E p50 / p99 (ms)", ("latency_s", "e2e"), "lat"),
    ("lateness p50 / p99 / max (ms)", ("lateness_ms",), "late_at"),
    ("lateness bound on p99 (ms)", ("lateness_ms",), "bound"),
    ("lateness at dispatch p50 / p99 / max (ms)", ("lateness_ms", "dispatch"), "late"),
    ("in flight p99 / max; held at --max-in-flight", ("client",), "in_flight"),
    ("client: loop lag p99 / max (ms); CPU share", ("client",), "client"),
    ("coverage: mean / min", ("coverage",), "cov"),
    ("flags", ("flags",), "flags"),
]


# Shaped arms' rows: what the policy cost users (from their arrival; the rows above are the server's)
_SHAPED_ROWS = [
    ("policy", ("policy", "spec"), "text"),
    ("hold p50 / p99 / max (ms)", ("hold_ms",), "late"),
    ("user TTFT p50 / p99 (ms, from arrival)", ("latency_s", "user_ttft"), "lat"),
    ("user E2E p50 / p99 (ms, from arrival)", ("latency_s", "user_e2e"), "lat"),
]
_GOODPUT_ROW = ("goodput within the SLO: share of planned (rate)", ("goodput",), "goodput")
_FRONT_ROW = ("on the energy-latency front (all-in J/request vs user TTFT p99; one run)", ("name",), "front")
_FRONT_NOTE = (
    "One run: the points have no interval, and a front from one run is no claim; for one, run an "
    "experiment with repeats (<code>joulebench run --repeats N</code>, docs/experiments.md), whose report "
    "says which dominations its repeats resolve. Filled points are on the front: no other arm is as low on "
    "both all-in energy per request and user TTFT p99 (from arrival, the hold included) and lower on one."
)

_BASIS = {"planned_gaps": "from the planned gaps", "max_lateness_ms": "--max-lateness-ms"}


# Why the verdict ranks by the all-in figure: the same text under the verdict wherever the page has one.
VERDICT_BASIS = (
    "The verdict ranks the arms by all-in J per successful request (the arm's whole window's energy, "
    "idle stretches and failed requests included, divided by its successful requests), not by the "
    "attributed figure (each request's share of the GPUs' energy while it was in flight), which is "
    "shown in parentheses."
)
SIMULATED_BANNER = (
    "Simulated GPU: every power and energy figure here is the simulator's (the mock server's model of a "
    "GPU, read by a simulated sidecar), not a measurement."
)


def render_html(doc: dict, analysis: Analysis, facts: RunFacts, load: pd.DataFrame | None = None) -> str:
    blocks = [*doc["arms"], doc["run"]]
    errors = error_codes(doc)
    head = "".join(_head(b["name"], errors.get(b["name"]), b is doc["run"]) for b in blocks)
    is_shaped = any(a.get("policy") for a in doc["arms"])
    shaped = [*_SHAPED_ROWS, _FRONT_ROW] if is_shaped else []
    slo = [_GOODPUT_ROW] if any(a.get("goodput") for a in doc["arms"]) else []
    front = arm_front(doc) if is_shaped else {}
    # The idle-apart rows only where the summary has the split (it predates them, or had no power)
    has_split = any(_get(b, ("all_in_split", "idle_j_per_request")) is not None for b in blocks)
    rows = [r for r in _ROWS[:-1] if has_split or r[2] != "split"]
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(
            f"<td>{html.escape(_front_cell(front, b, doc) if kind == 'front' else _cell(b, path, kind))}</td>"
            for b in blocks
        )
        + "</tr>"
        for label, path, kind in [*rows, *shaped, *slo, _ROWS[-1]]  # flags stay last
    )
    figures = [
        ("Power over time, and the requests under it", plots.power_timeline(analysis, doc, load), ""),
        ("Energy per request, per arm", plots.energy_distribution(analysis, doc), ""),
        ("Energy per request against realized rate", plots.energy_vs_rate(doc), ""),
        ("Latency percentiles", plots.latency_percentiles(doc), ""),
    ]
    if is_shaped:
        on_front = [name for name, on in front.items() if on]
        frontier = frontier_plot.run_frontier(doc, on_front)
        figures.append(("Energy-latency frontier (one run)", frontier, _FRONT_NOTE))
    images = "".join(
        f"<h2>{html.escape(title)}</h2>"
        + (
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{plots.png(fig)}">'
            if fig is not None
            else '<p class="note">No data to plot.</p>'
        )
        + (f'<p class="note">{note}</p>' if note else "")
        for title, fig, note in figures
    )
    cons = doc["conservation"]
    idle = doc["idle"]
    lag = fmt_power_lag(doc.get("power_lag"))  # None: a summary from before the lag was measured
    fit = token_fit_line(doc.get("token_fit"))
    flags = "".join(
        f'<li class="flag-{html.escape(f["severity"])}">{html.escape(f["severity"])} · '
        f"{html.escape(f['code'])} · {html.escape(f['scope'])}: {html.escape(f['message'])}</li>"
        for f in doc["flags"]
    )
    summary_json = json.dumps(doc).replace("</", "<\\/")  # cannot close the script element early
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>joulebench {html.escape(doc["run_id"])}</title>
<style>{_CSS}</style></head><body>
<h1>joulebench run {html.escape(doc["run_id"])}</h1>
{f'<p class="banner sim" id="simulated">{SIMULATED_BANNER}</p>' if facts.simulated else ""}
<p class="meta">method <b>{html.escape(doc["method"])}</b>
 · power source {html.escape(str(doc["power"]["source"]))}
 · generated {html.escape(doc["generated_utc"])} by joulebench {html.escape(doc["joulebench"])}</p>
{facts_section(facts)}
<h2>Verdict</h2>
{_verdict(doc)}
<h2>Energy account</h2>
<p>measured {fmt_num(cons["total_j"], " J")} = attributed {fmt_num(cons["attributed_j"], " J")}
 + unattributed {fmt_num(cons["unattributed_j"], " J")}
 (residual {fmt_num(cons["residual_j"], " J", digits=2)}).
 Idle power {fmt_num(idle.get("power_w"), " W")} ({html.escape(str(idle.get("mode")))};
 before {fmt_num(idle.get("pre_w"), " W")}, after {fmt_num(idle.get("post_w"), " W")}).</p>
{f'<p id="power-lag">{html.escape(lag)}</p>' if lag else ""}
{f'<p id="token-fit">{html.escape(fit)}</p>' if fit else ""}
{_gpu_table(doc)}
<h2>Flags</h2>
{f"<ul>{flags}</ul>" if flags else '<p class="note">None.</p>'}
<h2>Results per arm</h2>
<table><tr><th></th>{head}</tr>{body}</table>
<p class="note">Per-request figures are over successful requests and their attributed energy (shares of
the GPUs' energy while they were in flight). All-in figures divide the whole window's energy, idle
stretches and failed requests included, by the successful requests; all-in = idle (the idle floor's
energy over the window, per success) + above idle. See docs/energy.md.</p>
{images}
<script type="application/json" id="joulebench-summary">{summary_json}</script>
</body></html>
"""


def token_fit_line(fit: dict | None) -> str | None:
    """The `tokens` and `steps` splits' work fit in one line; None for `time` or an older summary."""
    if not fit:
        return None
    figures = ", ".join(
        f"{fmt_num(fit.get(key))} J/{unit}"
        for key, unit in (("j_per_step", "step"), ("j_per_decoded_token", "decoded token"),
                          ("j_per_prompt_token", "prompt token"))
    )  # fmt: skip
    r2 = fmt_num(fit.get("r2"), digits=3)
    verdict = "usable" if fit.get("usable") else f"not usable: {fit.get('reason') or 'no reason given'}"
    return (
        f"work fit: {figures}; R² {r2} over {fit.get('n_intervals')} pools; {verdict} "
        f"(split weights: {fit.get('weights')})"
    )


def _gpu_table(doc: dict) -> str:
    """Energy per GPU over the run (several GPUs, the host's unselected ones apart, or failed reads)."""
    rows = gpu_rows(doc)
    if rows is None:
        return ""
    head = "".join(f"<th>{html.escape(name)}</th>" for name, _, _ in GPU_COLUMNS)
    body = "".join(
        ('<tr class="bad">' if style == "red" else "<tr>")
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        + "</tr>"
        for cells, style in rows
    )
    return (
        f"<h3>Energy per GPU</h3><table><tr>{head}</tr>{body}</table>"
        '<p class="note">Attributed GPUs are those the run selected (--gpus); the host\'s other GPUs are '
        "reported apart and never attributed.</p>"
    )


def _front_cell(front: dict[str, bool | None], block: dict, doc: dict) -> str:
    if block is doc["run"]:
        return ""
    return front_mark(front.get(block["name"]))


def _head(name: str, errors: list[str] | None, run: bool) -> str:
    """An arm's column heading, marked with its error flags (incomplete power, late sends, ...)."""
    if run or not errors:
        return f"<th>{html.escape(name)}</th>"
    return f'<th class="flag-error">{html.escape(name)}<br>error: {html.escape(", ".join(errors))}</th>'


def facts_section(facts: RunFacts) -> str:
    """What was measured: one row per fact (its id names it, for tests and scripts), then the arms."""
    rows = [
        ("label", "label", facts.label),
        ("target", "target", facts.target), ("api", "API", facts.api), ("model", "model", facts.model),
        ("engine", "engine and version", facts.engine), ("gpus", "GPUs", facts.gpus),
        ("host-cpu", "host CPU", facts.host_cpu), ("plan-hash", "plan hash", facts.plan_hash),
        ("plan", "plan", facts.plan), ("command-line", "command line", facts.command_line),
        *[("merge-command-line", "merged by", line) for line in [facts.merge_command_line] if line],
        ("joulebench", "joulebench (that ran it)", facts.joulebench),
    ]  # fmt: skip
    table = "".join(
        f'<tr id="run-{key}"><th>{label}</th><td>{_code(v) if key in _CODE else html.escape(v)}</td></tr>'
        for key, label, v in rows
    )
    arms = "".join(
        f'<tr class="arm"><td>{html.escape(a.name)}</td><td>{_code(a.schedule)}</td>'
        f"<td>{html.escape(a.policy or '-')}</td><td>{html.escape(a.rate)}</td></tr>"
        for a in facts.arms
    )
    return (
        f'<h2>What was measured</h2><table class="facts">{table}</table>'
        f'<table class="facts" id="run-arms"><tr><th>arm</th><th>schedule</th><th>policy</th>'
        f"<th>target rate</th></tr>{arms}</table>"
    )


_CODE = ("plan-hash", "command-line", "merge-command-line")  # shown as typed: a hash, a command


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def _verdict(doc: dict) -> str:
    """The terminal's verdict line (terminal.cheapest_arm, the same text) and the figure it ranks by."""
    line = cheapest_arm(doc)
    if line is None:
        return '<p class="note">No verdict: fewer than two arms with an all-in figure to compare.</p>'
    css = "flag-error" if line.startswith(NO_VERDICT) else "verdict"
    return (
        f'<div id="verdict"><p class="{css}">{html.escape(line)}</p></div><p class="note">{VERDICT_BASIS}</p>'
    )


def _get(block: dict, path: tuple[str, ...]):
    v = block
    for key in path:
        if not isinstance(v, dict):
            return None
        v = v.get(key)
    return v


def _cell(block: dict, path: tuple[str, ...] | None, kind: str) -> str:
    if kind == "requests":
        r = block["requests"]
        return f"{r['ok']:,} / {r['total']:,}"
    if kind == "rate":
        r = block.get("rate") or {}
        return " / ".join(fmt_num(r.get(k), digits=3) for k in ("target", "planned", "realized"))
    assert path is not None
    v = _get(block, path)
    if kind == "ci":
        return fmt_ci(v)
    if kind == "lat":
        v = v or {}
        return " / ".join(fmt_num(None if v.get(k) is None else v[k] * 1e3) for k in ("p50", "p99"))
    if kind == "late":
        v = v or {}
        return " / ".join(fmt_num(v.get(k), digits=3) for k in ("p50", "p99", "max"))
    if kind in ("late_at", "in_flight", "client"):
        return client_cell(v or {}, kind)
    if kind == "bound":
        v = v or {}
        if v.get("bound_basis") == "closed_loop":
            return "none (closed loop)"
        if v.get("bound") is None:
            return "-"
        over = v.get("p99") is not None and v["p99"] > v["bound"]
        return f"{fmt_num(v['bound'], digits=3)} ({_BASIS.get(v['bound_basis'], v['bound_basis'])})" + (
            ": EXCEEDED" if over else ""
        )
    if kind == "all_in":
        return all_in_cell(block)
    if kind == "split":  # as the all-in figure: none over a window only partly under power
        incomplete = (block.get("power_coverage") or {}).get("complete") is False
        return all_in_cell(block) if incomplete else fmt_num(v)
    if kind == "total":
        share = (block.get("power_coverage") or {}).get("min")
        incomplete = (block.get("power_coverage") or {}).get("complete") is False
        return fmt_num(v) + (f" (only {share:.1%} of the window under power)" if incomplete else "")
    if kind == "pct":
        return "-" if v is None else f"{v:.2%}"
    if kind == "cov":
        v = v or {}
        return " / ".join(fmt_num(v.get(k), digits=3) for k in ("mean", "min"))
    if kind == "flags":
        return ", ".join(v or []) or "-"
    if kind == "text":
        return "-" if v is None else str(v)
    if kind == "goodput":
        return goodput_cell(v)
    return fmt_num(v)
