"""The last stage: join the run folder's requests and power and write the reports.

It reads only the folder (as `joulebench report` does), so what the run prints is what a later
`joulebench report RUN` rebuilds. The method and the power counter's resolution go into the manifest
(`energy`) first, so the rebuild uses them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console

from harness.report import render_terminal_summary, report_run
from harness.runfolder.report_files import read_summary
from harness.runner import RunResult
from harness.session.pipeline import RunContext
from harness.session.stage_state import MeasureState


@dataclass(eq=False)  # compared and hashed by identity
class ReportStage:
    method: str
    state: MeasureState
    console: Console
    html: bool = True  # report.html too (an experiment's cells may leave it out: plots take a second)
    errors: list[str] = field(default_factory=list, init=False)  # codes of the error flags, for --strict

    def before(self, ctx: RunContext) -> None:
        pass

    def after(self, ctx: RunContext, result: RunResult) -> None:
        energy: dict[str, object] = {"method": self.method}
        if self.state.counter_period_s is not None:
            energy["counter_period_s"] = self.state.counter_period_s
        ctx.folder.update_manifest(energy=energy)
        for note in self.state.notes:
            self.console.print(f"[yellow]note:[/] {note}", highlight=False)
        with self.console.status("joining requests and power..."):
            analysis, paths = report_run(ctx.folder.path, html=self.html)
        render_terminal_summary(read_summary(ctx.folder.path), self.console)  # exactly what was written
        self.errors = sorted({f.code for f in analysis.flags if f.severity == "error"})
        self.console.print(f"report: {paths.html or paths.summary}", highlight=False)
