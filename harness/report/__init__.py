"""Reports of a run: summary.json, energy.parquet, a self-contained report.html, terminal tables, compare."""

from harness.report.compare import compare, load_entries, render_comparison
from harness.report.run_inputs import RunInputs, analyze_run, load_run
from harness.report.run_report import ReportPaths, report_run, summary_document, write_run_reports
from harness.report.terminal import cheapest_arm, render_terminal_summary

__all__ = [
    "ReportPaths",
    "RunInputs",
    "analyze_run",
    "cheapest_arm",
    "compare",
    "load_entries",
    "load_run",
    "render_comparison",
    "render_terminal_summary",
    "report_run",
    "summary_document",
    "write_run_reports",
]
