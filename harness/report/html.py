"""`report.html`: one self-contained page (inline CSS, plots as base64 PNG, the summary embedded as JSON).

Every number on the page is read from the summary document, so the page and summary.json agree.
"""

from __future__ import annotations

import html
import json

import pandas as pd

from harness.energy import Analysis
from harness.report import plots
from harness.report.format import fmt_ci, fmt_num
from harness.report.terminal import NO_VERDICT, all_in_cell, cheapest_arm, error_codes, goodput_cell

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
img{max-width:100%;height:auto;display:block;margin:.5em 0}
.note{color:#666;font-size:.85em}
"""

# (label, path into a block, unit/format)
_ROWS = [
    ("successful / planned requests", None, "requests"),
    ("J per request: mean", ("j_per_request", "mean"), "j"),
    ("J per request: 95% CI of the mean", ("j_per_request", "ci95"), "ci"),
    ("J per request: p50", ("j_per_request", "p50"), "j"),
    ("J per request: p90", ("j_per_request", "p90"), "j"),
    ("J per request: p99", ("j_per_request", "p99"), "j"),
    ("Wh per request: mean", ("wh_per_request", "mean"), "wh"),
    ("all-in J per request (window total / successes)", ("all_in", "j_per_request"), "all_in"),
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
    ("lateness p50 / p99 / max (ms)", ("lateness_ms",), "late"),
    ("lateness bound on p99 (ms)", ("lateness_ms",), "bound"),
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

_BASIS = {"planned_gaps": "from the planned gaps", "max_lateness_ms": "--max-lateness-ms"}


def render_html(doc: dict, analysis: Analysis, load: pd.DataFrame | None = None) -> str:
    blocks = [*doc["arms"], doc["run"]]
    errors = error_codes(doc)
    head = "".join(_head(b["name"], errors.get(b["name"]), b is doc["run"]) for b in blocks)
    shaped = _SHAPED_ROWS if any(a.get("policy") for a in doc["arms"]) else []
    slo = [_GOODPUT_ROW] if any(a.get("goodput") for a in doc["arms"]) else []
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{html.escape(_cell(b, path, kind))}</td>" for b in blocks)
        + "</tr>"
        for label, path, kind in [*_ROWS[:-1], *shaped, *slo, _ROWS[-1]]  # flags stay last
    )
    figures = [
        ("Power over time, with one bar per request", plots.power_timeline(analysis, doc, load)),
        ("Energy per request, per arm", plots.energy_distribution(analysis, doc)),
        ("Energy per request against realized rate", plots.energy_vs_rate(doc)),
        ("Latency percentiles", plots.latency_percentiles(doc)),
    ]
    images = "".join(
        f"<h2>{html.escape(title)}</h2>"
        + (
            f'<img alt="{html.escape(title)}" src="data:image/png;base64,{plots.png(fig)}">'
            if fig is not None
            else '<p class="note">No data to plot.</p>'
        )
        for title, fig in figures
    )
    cons = doc["conservation"]
    idle = doc["idle"]
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
<p class="meta">method <b>{html.escape(doc["method"])}</b>
 · power source {html.escape(str(doc["power"]["source"]))}
 · generated {html.escape(doc["generated_utc"])} by joulebench {html.escape(doc["joulebench"])}</p>
<h2>Energy account</h2>
<p>measured {fmt_num(cons["total_j"], " J")} = attributed {fmt_num(cons["attributed_j"], " J")}
 + unattributed {fmt_num(cons["unattributed_j"], " J")}
 (residual {fmt_num(cons["residual_j"], " J", digits=2)}).
 Idle power {fmt_num(idle.get("power_w"), " W")} ({html.escape(str(idle.get("mode")))};
 before {fmt_num(idle.get("pre_w"), " W")}, after {fmt_num(idle.get("post_w"), " W")}).</p>
<h2>Flags</h2>
{f"<ul>{flags}</ul>" if flags else '<p class="note">None.</p>'}
<h2>Results per arm</h2>
{_verdict(doc)}
<table><tr><th></th>{head}</tr>{body}</table>
<p class="note">Per-request figures are over successful requests and their attributed energy (shares of
the GPUs' energy while they were in flight). All-in figures divide the whole window's energy, idle
stretches and failed requests included, by the successful requests. See docs/energy.md.</p>
{images}
<script type="application/json" id="joulebench-summary">{summary_json}</script>
</body></html>
"""


def _head(name: str, errors: list[str] | None, run: bool) -> str:
    """An arm's column heading, marked with its error flags (incomplete power, late sends, ...)."""
    if run or not errors:
        return f"<th>{html.escape(name)}</th>"
    return f'<th class="flag-error">{html.escape(name)}<br>error: {html.escape(", ".join(errors))}</th>'


def _verdict(doc: dict) -> str:
    line = cheapest_arm(doc)
    if line is None:
        return ""
    css = "flag-error" if line.startswith(NO_VERDICT) else "verdict"
    return f'<p class="{css}">{html.escape(line)}</p>'


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
