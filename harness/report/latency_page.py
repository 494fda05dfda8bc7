"""`report.html` of a run without a power source: the requests' latency only, saying why no energy.

Such a run has no power to join, so no summary.json and none of the energy report's figures; its page
shows what was measured (the energy report's facts section, its label first) and what `joulebench run`
printed for it (`request_summary.arm_summary`), with the error flags that need no power. A
self-contained page of its own, so that the energy report's page stays about energy.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from harness.power.series import PowerData
from harness.report.html import facts_section
from harness.report.run_facts import run_facts
from harness.runfolder import RunFolder
from harness.runfolder.report_files import write_report_html

NO_POWER = (
    "No power source was given (--sidecar, --prometheus or --dcgm), so this run has no energy figures: "
    "latency only."
)
_COLUMNS = (
    "arm", "planned", "sent", "ok", "not ok", "rate/s", "lateness p50 / p99 ms", "p99 bound ms",
    "TTFT p50 / p99 ms", "E2E p50 / p99 ms", "error flags",
)  # fmt: skip
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child,td:last-child{text-align:left}.note{background:#fff4d6;padding:8px}"
    ".error{color:#b00020}table.facts th,table.facts td{text-align:left}"
)


def write_latency_report(run_dir: Path, arms: list[dict[str, Any]]) -> Path:
    """Write `run_dir/report.html` from `arm_summary`'s rows and the run folder's manifest and plan."""
    folder = RunFolder.open(run_dir)
    facts = run_facts(folder.manifest(), folder.plan().header, PowerData([], source="none"))  # no power
    rows = "".join(_row(arm) for arm in arms)
    head = "".join(f"<th>{escape(c)}</th>" for c in _COLUMNS)
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>joulebench · {escape(run_dir.name)}"
        f"</title><style>{_STYLE}</style></head><body><h1>joulebench · {escape(run_dir.name)}</h1>"
        f"<p class='note'>{escape(NO_POWER)}</p>{facts_section(facts)}"
        f"<h2>Requests per arm (warm-up excluded)</h2><table><tr>{head}</tr>{rows}</table></body></html>\n"
    )
    return write_report_html(run_dir, html)


def _row(arm: dict[str, Any]) -> str:
    bad = ", ".join(f"{k} {v}" for k, v in arm["status"].items() if k != "ok") or "0"
    bound = arm["lateness_bound_ms"]
    cells = (
        arm["arm"],
        str(arm["planned"]),
        str(arm["sent"]),
        str(arm["status"].get("ok", 0)),
        bad,
        "-" if not arm["rate_per_s"] else f"{arm['rate_per_s']:.2f}",
        _pair(arm["lateness_ms"], ".2f"),
        "-" if bound is None else f"{bound:.1f}" + (" exceeded" if arm["late"] else ""),
        _pair(arm["ttft_ms"], ".1f"),
        _pair(arm["e2e_ms"], ".1f"),
        ", ".join(arm["errors"]) or "-",
    )
    style = " class='error'" if arm["errors"] else ""
    return f"<tr{style}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"


def _pair(stats: dict[str, Any], fmt: str) -> str:
    if not stats["n"]:
        return "-"
    return f"{format(stats['p50'], fmt)} / {format(stats['p99'], fmt)}"
