"""One `joulebench run`, from validated settings to a reported run folder.

    check everything (target, power sources, server container)  ->  nothing written on bad input
    create the run folder and its manifest
    run_pipeline(stages):  report ( server ( power ( server metrics ( idle ( execute ) ) ) ) )
                           before runs left to right, after right to left (harness/session/pipeline.py)

With no target, the embedded default (embedded_stack.py) provides one: the mock server and a simulated
sidecar as subprocesses, stopped whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from foundation.errors import InputError
from foundation.redact import redact_userinfo
from foundation.user_warning import warn
from harness.backends import Target, resolve_target
from harness.clock import ClockAnchor
from harness.report.latency_page import write_latency_report
from harness.report.request_summary import arm_summary, arm_table
from harness.report.terminal import wide_console
from harness.runfolder import RunFolder
from harness.runfolder.latest import point_latest
from harness.runfolder.request_log import RecordLog, log_header
from harness.runner import RunOptions, RunResult, check_run, resolve_transport
from harness.session.config import IDLE_REAL_S, IDLE_SIMULATED_S, MeasureConfig, TargetConfig
from harness.session.embedded_stack import EmbeddedStack, default_plan_spec
from harness.session.idle_capture import IdleStage
from harness.session.metrics_scraper import ServerMetricsStage
from harness.session.pipeline import RunContext, Stage, run_pipeline
from harness.session.power_stage import PowerStage
from harness.session.provenance import command_line, host_info, versions
from harness.session.report_stage import ReportStage
from harness.session.server_stage import ServerStage
from harness.session.stage_state import MeasureState
from traffic.builder import build_plan
from traffic.describe import build_warnings
from traffic.plan import Plan, load_plan
from traffic.spec import PlanSpec

STRICT_EXIT = 1  # --strict and a figure with an error flag
INTERRUPTED_EXIT = 130  # stopped by Ctrl-C or SIGTERM (as a shell reports SIGINT)


@dataclass(frozen=True)
class Output:
    folder: Path  # where the run folder is made
    name: str | None  # its name (default: time and plan hash)
    quiet: bool  # everything to the given console, tables too
    on_folder: Callable[[Path], None] | None = None  # told the run folder's path once it exists
    argv: Sequence[str] | None = None  # the command line for the manifest (default: sys.argv)


@dataclass(frozen=True)
class PlanSource:
    """Where the plan comes from: a file, a spec from flags, or (neither) the built-in default."""

    file: Path | None = None
    spec: Callable[[], PlanSpec] | None = None  # deferred: validating it may read files
    built: tuple[Plan, str] | None = None  # a plan in hand, and where it came from

    def load(self, console: Console, say: Callable[[str], None] = warn) -> tuple[Plan, str]:
        """The plan and where it came from; `say` tells its build warnings (default: on stderr)."""
        if self.built is not None:
            return self.built
        if self.file is not None:
            return load_plan(self.file), str(self.file)
        spec, origin = (self.spec(), "built from flags") if self.spec else (default_plan_spec(), "built-in")
        with console.status("building plan") as status:
            built = build_plan(spec, progress=lambda message: status.update(message))
        for warning in build_warnings(built):
            say(warning)
        return built, origin


def run_measured(
    target: TargetConfig,
    plan: PlanSource,
    options: RunOptions,
    measure: MeasureConfig,
    out: Path,
    name: str | None = None,
    console: Console | None = None,
    on_folder: Callable[[Path], None] | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Execute and measure one run; returns the exit status (0; STRICT_EXIT with --strict and an error
    flag; INTERRUPTED_EXIT when stopped). `name`: the run folder's name (default: time and plan hash);
    `console`: where all its output goes instead of the terminal, build warnings too (an experiment logs
    its cells there); `on_folder`: called with the run folder's path once it is made (the Python API
    opens it afterwards); `argv`: the command line the manifest records, where it is not this process's
    (a call from Python)."""
    options.validate()
    RunFolder.check_out(out)  # before a plan is built or a server started
    if target.url is None:
        _check_embedded(measure)
    measure.validate(embedded=target.url is None)
    quiet = console is not None
    err = console if console is not None else Console(stderr=True)
    if options.shard.count > 1 and measure.power.sources:
        raise InputError(
            f"--shard {options.shard}: power is measured for the whole plan, not a shard; run the shards "
            "without power sources and give the source to `joulebench merge`"
        )
    the_plan, origin = plan.load(err, warn if console is None else _warning_to(console))
    output = Output(out, name, quiet, on_folder, argv)
    try:
        with sigterm_as_interrupt():
            if target.url is not None:
                return _run(target, the_plan, origin, options, measure, output, err, None)
            with EmbeddedStack(err) as stack:
                target = replace(target, url=stack.mock_url)
                measure = replace(measure, power=replace(measure.power, sidecar=stack.sidecar_url))
                return _run(target, the_plan, origin, options, measure, output, err, stack)
    except KeyboardInterrupt:
        # Outside the execution itself (which stops gracefully on its own): during the checks, the
        # idle capture, or a second Ctrl-C while fetching or reporting. Everything started is stopped.
        err.print("joulebench: interrupted", highlight=False)
        return INTERRUPTED_EXIT


def _run(
    target: TargetConfig,
    plan: Plan,
    origin: str,
    options: RunOptions,
    measure: MeasureConfig,
    out: Output,
    err: Console,
    stack: EmbeddedStack | None,
) -> int:
    assert target.url is not None
    anchor = ClockAnchor.now()
    state = MeasureState()
    server = ServerStage(measure.server, target.url, err)
    server.prepare()
    api_key = os.environ.get(target.api_key_env) or None
    resolved = asyncio.run(resolve_target(target.url, target.backend, target.model, api_key))
    options = resolve_transport(plan, resolved.url, options)  # once: auto is then a concrete transport
    budget = check_run(plan, resolved, options)
    if budget.cap is not None:
        err.print(
            f"[yellow]open-files limit {budget.soft}: at most {budget.cap} connections at once (the plan "
            "could need more); requests beyond that wait in the client and count as late "
            f"(raise the limit with `ulimit -n`)[/]",
            highlight=False,
        )
    power = PowerStage(measure.power, state, err)
    power.preflight(anchor)
    idle_s = _idle_seconds(measure, power)

    folder = RunFolder.create(out.folder, plan, name=out.name)
    if stack is not None:
        stack.folder = folder.path
        # Now, not only when it stops: the report (written before that) says the engine was the mock.
        folder.update_manifest(embedded=stack.describe())
    if out.on_folder is not None:
        out.on_folder(folder.path)
    err.print(f"run folder: {folder.path}")
    err.print(f"transport: {options.transport_reason or options.transport}", highlight=False, markup=False)
    # A run of its own, not an experiment's cell or a shard (a part, merged later): `<out>/latest` is it now.
    if out.name is None and options.shard.count == 1:
        why_not = point_latest(folder.path)
        if why_not:
            err.print(f"[yellow]note:[/] {why_not}", highlight=False)
    manifest = _manifest(plan, origin, resolved, target, api_key is not None, out.argv or sys.argv)
    for note in manifest["target"]["notes"]:
        err.print(f"[yellow]note:[/] {note}")
    folder.update_manifest(**manifest)
    # The request log exists from here on, before the idle capture: a run killed before it sent anything
    # is recovered with every planned request `not_sent`, never as a folder without its requests.
    header = log_header(
        anchor=anchor, plan=plan, shard=options.shard, warmup=options.warmup, api=resolved.api.name,
        stream=options.stream,
    )  # fmt: skip
    RecordLog(folder.log_path, header).close()

    out_console = err if out.quiet else wide_console()
    report = (
        ReportStage(
            measure.method,
            state,
            out_console,
            measure.report_html,
            measure.max_lateness_ms,
            measure.slo_ttft_s,
            measure.slo_e2e_s,
            measure.power_lag,
        )
        if power.sources
        else None
    )
    stages: list[Stage] = [s for s in (report, server) if s is not None]
    if power.sources:
        stages.append(power)
    else:
        err.print(
            "[yellow]note:[/] no power source (--sidecar, --prometheus, --dcgm): requests only, no energy"
        )
    metrics_url = measure.server.metrics_url(target.url)
    if metrics_url:
        stages.append(ServerMetricsStage(metrics_url, measure.server.metrics_interval_s, err))
    if idle_s > 0:
        stages.append(IdleStage(idle_s, state, err, measure.idle_after))
    try:
        result = run_pipeline(RunContext(plan, resolved, options, folder, api_key, anchor), stages)
    finally:
        if stack is not None:
            stack.stop()
            folder.update_manifest(embedded=stack.describe())
    errors: list[str] = []  # error flags of a run without power (no summary to hold them)
    if report is None:
        closed = [a.name for a in plan.header.arms if a.closed_loop]
        lag = {a.name: a.loop_lag_ms for a in result.arms}
        arms = arm_summary(result.requests, closed, measure.max_lateness_ms, lag, options.max_loop_lag_ms)
        out_console.print(arm_table(arms))
        for arm in arms:  # the energy summary's error flags, where there is no summary
            for code in arm["errors"]:
                errors.append(code)
                out_console.print(
                    f"error: [{arm['arm']}] {_NO_POWER_ERRORS[code]}", style="bold red", markup=False,
                    highlight=False,
                )  # fmt: skip
        if measure.report_html:  # latency only, saying why
            out_console.print(f"report: {write_latency_report(folder.path, arms)}", highlight=False)
    out_console.print(f"{result.stop_reason}: {folder.path}", highlight=False, markup=False, soft_wrap=True)
    return _exit_code(result, state, report, measure, errors)


_NO_POWER_ERRORS = {
    "lateness_over_bound": "p99 lateness exceeds its bound: the offered load was not the plan's",
    "client_errors": "requests failed in the client, not the server (client_error): the figures "
    "measure the load generator",
    "in_flight_capped": "requests waited at --max-in-flight before they were sent: the client fell "
    "behind and the cap held the load back, so the offered load was not the plan's",
    "loop_lag_over_bound": "the runner's event loop woke up later than its bound (--max-loop-lag-ms): "
    "every send due meanwhile waited as long, so the offered load was not the plan's",
}


def _exit_code(
    result: RunResult,
    state: MeasureState,
    report: ReportStage | None,
    measure: MeasureConfig,
    errors: list[str],
) -> int:
    if result.stop_reason in ("interrupted", "aborted") or state.interrupted:
        return INTERRUPTED_EXIT
    if measure.strict and ((report is not None and report.errors) or errors):
        return STRICT_EXIT
    return 0


def _warning_to(console: Console) -> Callable[[str], None]:
    """Warnings to a console the caller gave: all the output goes there (none with a quiet one)."""
    return lambda message: console.print(
        f"joulebench: warning: {message}", markup=False, highlight=False, soft_wrap=True
    )


def _check_embedded(measure: MeasureConfig) -> None:
    """The embedded default brings its own server and power: flags that point elsewhere make no sense."""
    given = [f"--{k}" for k in measure.power.sources]
    if measure.server.container:
        given.append("--server-container")
    if measure.server.info_file:
        given.append("--server-info")
    if given:
        raise InputError(f"{given[0]}: needs --target (without it, joulebench runs its embedded mock stack)")


def _idle_seconds(measure: MeasureConfig, power: PowerStage) -> float:
    if measure.idle_s is not None:
        return measure.idle_s
    if not power.sources:
        return 0.0
    return IDLE_SIMULATED_S if power.simulated else IDLE_REAL_S


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops joulebench the way Ctrl-C does (subprocesses stopped, folder consistent), not at once.

    During the execution the runner installs its own handlers (graceful stop) and puts these back.
    """
    if sys.platform == "win32" or threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (and Windows has no SIGTERM to speak of)
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _notes(plan: Plan, target: Target) -> list[str]:
    if target.api.name == "tgi-generate" and bool(plan.rows["ignore_eos"].any()):
        return ["the plan sets ignore_eos, which TGI's API does not have: max_tokens is only an upper bound"]
    return []


def _manifest(
    plan: Plan, origin: str, target: Target, config: TargetConfig, api_key_set: bool, argv: Sequence[str]
) -> dict[str, Any]:
    header = plan.header
    return {
        "label": config.label,
        "command_line": command_line(argv),
        "versions": versions(),
        "host": host_info(),
        "target": {
            "url": redact_userinfo(target.url),
            "backend": target.api.name,
            "model": target.api.model,
            "detected": target.detected,
            "server": target.server,
            "api_key": {"env": config.api_key_env, "set": api_key_set},
            "notes": _notes(plan, target),
        },
        "plan": {
            "hash": header.plan_hash,
            "origin": origin,
            "n": header.n,
            "seed": header.seed,
            "target_mean_rate": header.target_mean_rate,
            "prompt_source": header.prompt_source,
            "arms": [
                {"name": a.name, "kind": a.kind, "spec": a.spec, "mean_rate": a.mean_rate, "users": a.users}
                for a in header.arms
            ],
        },
    }
