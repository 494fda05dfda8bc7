"""The last stage: join the run folder's requests and power and write the reports.

It reads only the folder (as `joulebench report` does), so what the run prints is what a later
`joulebench report RUN` rebuilds. The method, the power counter's resolution and a lateness bound given
with --max-lateness-ms go into the manifest (`energy`) first, so the rebuild uses them too.
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
    max_lateness_ms: float | None = None  # None: each arm's bound from its planned gaps
    slo_ttft_s: float | None = None  # the SLO goodput counts against (None: no goodput)
    slo_e2e_s: float | None = None
    power_lag: str = "auto"  # --power-lag, recorded when not auto
    errors: list[str] = field(default_factory=list, init=False)  # codes of the error flags, for --strict

    def before(self, ctx: RunContext) -> None:
        # Written now, not only after: a run killed mid-plan is reported (and recovered) as asked.
        ctx.folder.update_manifest(energy=self._energy())

    def _energy(self) -> dict[str, object]:
        energy: dict[str, object] = {"method": self.method}
        if self.state.counter_period_s is not None:
            energy["counter_period_s"] = self.state.counter_period_s
        if self.state.sensor_delay_s is not None:
            energy["sensor_delay_s"] = self.state.sensor_delay_s
        if self.max_lateness_ms is not None:
            energy["max_lateness_ms"] = self.max_lateness_ms
        if self.slo_ttft_s is not None:
            energy["slo_ttft_s"] = self.slo_ttft_s
        if self.slo_e2e_s is not None:
            energy["slo_e2e_s"] = self.slo_e2e_s
        if self.power_lag != "auto":
            energy["power_lag"] = self.power_lag
        return energy

    def after(self, ctx: RunContext, result: RunResult) -> None:
        ctx.folder.update_manifest(energy=self._energy())
        for note in self.state.notes:
            self.console.print(f"[yellow]note:[/] {note}", highlight=False)
        with self.console.status("joining requests and power..."):
            analysis, paths = report_run(ctx.folder.path, html=self.html)
        render_terminal_summary(read_summary(ctx.folder.path), self.console)  # exactly what was written
        self.errors = sorted({f.code for f in analysis.flags if f.severity == "error"})
        self.console.print(f"report: {paths.html or paths.summary}", highlight=False)
