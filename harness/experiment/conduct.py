"""Run an experiment's cells, one measured run each, recording every cell in cells.parquet as it ends.

    bring up the target once  ->  for each cell not yet done, in design order:
        the cell's plan (its arm of the rate's plan)  ->  run_measured into runs/<cell name>/
        ->  its figures into cells.parquet (atomically)
    ->  sequential stopping may add a repeat  ->  the experiment's report

A cell is "running" in the table while it runs: after a crash or a lost machine, `resume` finds it so,
moves its partial run folder to abandoned/ and runs it again; a "done" cell is never run again.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import pandas as pd
from rich.console import Console

from foundation.errors import InputError
from foundation.redact import redact_userinfo
from harness.backends.client import TRANSPORTS
from harness.energy.repeats import pair_differences, widest_half_width
from harness.experiment.cell_figures import cell_figures
from harness.experiment.definition import ExperimentSpec
from harness.experiment.design import DesignCell, repeat_cells
from harness.experiment.targets import LiveTarget, bring_up
from harness.runfolder import RunFolder, utc_iso
from harness.runfolder.experiment_files import CELL_COLUMNS, ExperimentFolder
from harness.runfolder.report_files import SUMMARY_FILE
from harness.runner import RunOptions
from harness.runner.transport_choice import resolve_transport
from harness.session.config import MeasureConfig, ServerConfig
from harness.session.measured_run import PlanSource, run_measured, sigterm_as_interrupt
from traffic.plan import Plan, load_plan, select_arms

_INTERRUPTED = 130
CELLS_LOG = "cells.log"


def conduct(spec: ExperimentSpec, folder: ExperimentFolder, console: Console) -> int:
    """Run every cell that is not done; returns 0, 1 (--strict and an error flag) or 130 (stopped)."""
    with folder.lock():  # one process at a time: before the table is even read
        return _conduct(spec, folder, console)


def _conduct(spec: ExperimentSpec, folder: ExperimentFolder, console: Console) -> int:
    rates = spec.rate_list
    plans = {rate: _rate_plan(folder, rate) for rate in rates}
    existing = _existing(folder)
    # Sequential stopping may have added repeats beyond the minimum: a resume keeps them.
    repeats = max([spec.repeats, *[int(r) for r in existing["repeat"]]])
    cells = _with_design(spec, folder, existing, rates, repeats)
    _adopt_finished(spec, folder, cells)
    if len(existing):
        left = int((cells["status"] != "done").sum())
        console.print(f"resuming {folder.experiment_id}: {left} of {len(cells)} cells to run")
    folder.write_cells(cells)
    try:
        # SIGTERM stops an experiment as Ctrl-C does: the target comes down, the table stays consistent.
        with sigterm_as_interrupt(), bring_up(spec, folder.path / "server", console) as live:
            console.print(f"experiment folder: {folder.path}", highlight=False, soft_wrap=True)
            while True:
                code = _run_pending(spec, folder, cells, plans, live, console)
                if code == _INTERRUPTED:
                    return code
                more = _next_repeat(spec, cells)
                if more is None:
                    break
                console.print(f"sequential stopping: adding repeat {more}")
                cells = _with_design(spec, folder, cells, rates, more)
                folder.write_cells(cells)
    except KeyboardInterrupt:
        _release_running(folder, cells)
        console.print("joulebench: experiment interrupted; `joulebench experiment resume` continues it")
        return _INTERRUPTED
    # run_measured exits 1 only under strict, when a cell's report has an error flag.
    return 1 if bool((cells["exit_code"] == 1).any()) else 0


def _existing(folder: ExperimentFolder) -> pd.DataFrame:
    if folder.has_cells():
        return folder.read_cells()
    return pd.DataFrame({name: pd.Series(dtype=object) for name in CELL_COLUMNS})


def _with_design(
    spec: ExperimentSpec,
    folder: ExperimentFolder,
    cells: pd.DataFrame,
    rates: list[float | None],
    repeats: int,
) -> pd.DataFrame:
    """The table with a row for every cell of repeats 1..`repeats` (existing rows kept as they are);
    an existing row that disagrees with the design means the folder belongs to another experiment."""
    rows: list[dict[str, Any]] = []
    for repeat in range(1, repeats + 1):
        for design in repeat_cells(spec.arm_names, rates, repeat, spec.order, spec.seed):
            rows.append(_design_row(folder, len(rows), design))
    known = {int(c): i for i, c in enumerate(cells["cell"].tolist())} if len(cells) else {}
    out: list[dict[str, Any]] = []
    for row in rows:
        if row["cell"] in known:
            old = _row(cells, known[row["cell"]])
            for key in ("repeat", "arm", "position", "block"):
                if old[key] != row[key]:
                    raise InputError(
                        f"{folder.path / folder.CELLS}: cell {row['cell']} is {key}={old[key]!r}, the design "
                        f"says {row[key]!r}: the table does not belong to this experiment.yaml"
                    )
            out.append(old)
        else:
            out.append(row)
    return pd.DataFrame(out, columns=list(CELL_COLUMNS))


def _design_row(folder: ExperimentFolder, index: int, cell: DesignCell) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CELL_COLUMNS)
    row.update(
        experiment_id=folder.experiment_id,
        cell=index,
        block=cell.block,
        repeat=cell.repeat,
        rate=cell.rate,
        arm=cell.arm,
        position=cell.position,
        previous_arm=cell.previous_arm,
        status="pending",
        flags="",
    )
    return row


def _rate_plan(folder: ExperimentFolder, rate: float | None) -> Plan:
    """The rate's whole plan, as saved when the experiment started (hash-checked)."""
    path = folder.plan_path(rate)
    if not path.is_file():
        raise InputError(f"{path}: missing (the experiment folder is incomplete)")
    return load_plan(path)


def _rate(row: dict[str, Any]) -> float | None:
    return None if pd.isna(row["rate"]) else float(row["rate"])


def _cell_name(row: dict[str, Any]) -> str:
    rate = "own" if _rate(row) is None else f"{row['rate']:g}"
    return f"c{int(row['cell']):03d}-r{int(row['repeat'])}-rate{rate}-{row['arm']}"


def _run_pending(
    spec: ExperimentSpec,
    folder: ExperimentFolder,
    cells: pd.DataFrame,
    plans: dict[float | None, Plan],
    live: LiveTarget,
    console: Console,
) -> int:
    """The cells not yet done; each prints one line here, and its own output (notes, warnings, the
    run's tables) goes to cells.log in the experiment folder."""
    with (folder.path / CELLS_LOG).open("a", encoding="utf-8") as log:
        cells_log = Console(file=log, width=120, no_color=True)
        return _run_cells(spec, folder, cells, plans, live, console, cells_log)


def _run_cells(
    spec: ExperimentSpec,
    folder: ExperimentFolder,
    cells: pd.DataFrame,
    plans: dict[float | None, Plan],
    live: LiveTarget,
    console: Console,
    cells_log: Console,
) -> int:
    total = len(cells)
    # Each cell's idle capture before it is the cool-down. Without a power source there is no idle
    # power to capture (MeasureConfig refuses idle_s then): the cool-down is a plain pause instead.
    pause_s = 0.0 if live.power.sources else spec.gap_s
    measure = MeasureConfig(
        power=live.power,
        server=ServerConfig(info_file=live.server_info),
        idle_s=spec.gap_s if live.power.sources else 0.0,
        idle_after=False,
        method=spec.method,
        strict=spec.strict,
        slo_ttft_s=spec.slo_ttft_s,
        slo_e2e_s=spec.slo_e2e_s,
        report_html=spec.cell_reports,
    ).validate()
    options = _one_transport(spec.run_options(str(folder.path / folder.SPEC)), folder, cells, plans, live)
    for i in range(total):
        row = _row(cells, i)
        if row["status"] == "done":
            continue
        name = _cell_name(row)
        moved = folder.abandon(name)
        if moved is not None:
            console.print(f"cell {name}: its earlier, unfinished run folder moved to {moved}")
        cell_plan = select_arms(plans[_rate(row)], [str(row["arm"])])
        cells_log.rule(f"cell {row['cell']}: {name}")
        time.sleep(pause_s)
        started = utc_iso(time.time_ns())
        _set(cells, i, status="running", run_id=name, run_dir=f"runs/{name}",
             plan_hash=cell_plan.header.plan_hash, started_utc=started)  # fmt: skip
        folder.write_cells(cells)
        try:
            code = run_measured(
                live.target,
                PlanSource(built=(cell_plan, f"experiment {folder.experiment_id}, cell {row['cell']}")),
                options,
                measure,
                folder.runs,
                name=name,
                console=cells_log,
            )
            if code != _INTERRUPTED:
                figures = cell_figures(folder.runs / name, str(row["arm"]), spec.steady_state)
        except BaseException:  # the target went away, a bug, Ctrl-C between stages: the cell is not done
            _release_running(folder, cells)
            raise
        if code == _INTERRUPTED:
            _release_running(folder, cells)
            console.print("joulebench: experiment interrupted; `joulebench experiment resume` continues it")
            return code
        _set(cells, i, status="done", exit_code=code, **figures)
        folder.write_cells(cells)
        console.print(_cell_line(_row(cells, i), total), highlight=False)
    return 0


def _one_transport(
    options: RunOptions,
    folder: ExperimentFolder,
    cells: pd.DataFrame,
    plans: dict[float | None, Plan],
    live: LiveTarget,
) -> RunOptions:
    """`transport: auto` decided once for every cell: decided per cell, it would carry an open-loop arm
    on the sender and a shaped arm on aiohttp, a difference between cells that is not the policy's.
    Decided over every arm and rate, as a run of the whole plan would; a resumed experiment keeps the
    transport (and reason) of its done cells, as recorded in their run folders."""
    done = cells["status"] == "done"
    if options.transport != "auto" or done.all():
        return options
    for run_dir in cells.loc[done, "run_dir"]:
        try:
            recorded = RunFolder.open(folder.path / str(run_dir)).manifest().get("options") or {}
        except InputError:  # a pruned cell folder: another done cell may still say
            continue
        used = recorded.get("transport")
        if used in TRANSPORTS:
            why = recorded.get("transport_reason") or f"auto: {used}, as the experiment's done cells"
            return replace(options, transport=used, transport_reason=why)
    url = live.target.url
    assert url is not None  # bring_up gives every target its URL
    # Every rate's plan: the sender only if it applies to all of them (a higher rate needs more
    # descriptors), else the first reason it does not.
    chosen = [resolve_transport(plan, url, options) for plan in plans.values()]
    return next((c for c in chosen if c.transport != "sender"), chosen[0])


def _row(cells: pd.DataFrame, i: int) -> dict[str, Any]:
    return {str(key): value for key, value in cells.iloc[i].items()}


def _set(cells: pd.DataFrame, i: int, **values: Any) -> None:
    for key, value in values.items():
        cells.at[cells.index[i], key] = value


def _adopt_finished(spec: ExperimentSpec, folder: ExperimentFolder, cells: pd.DataFrame) -> None:
    """A cell left "running" whose run folder was reported (the experiment died between the report and
    the table's update) is done: its figures are read back, never measured again."""
    for i in range(len(cells)):
        row = _row(cells, i)
        if row["status"] == "running" and (folder.runs / _cell_name(row) / SUMMARY_FILE).is_file():
            figures = cell_figures(folder.runs / _cell_name(row), str(row["arm"]), spec.steady_state)
            _set(cells, i, status="done", exit_code=0, **figures)


def refigure_cells(spec: ExperimentSpec, folder: ExperimentFolder) -> None:
    """Every done cell's figures read again from its run folder, and the table rewritten."""
    cells = folder.read_cells()
    for i in range(len(cells)):
        row = _row(cells, i)
        if row["status"] == "done":
            _set(
                cells,
                i,
                **cell_figures(folder.path / str(row["run_dir"]), str(row["arm"]), spec.steady_state),
            )
    folder.write_cells(cells)


def _release_running(folder: ExperimentFolder, cells: pd.DataFrame) -> None:
    """A cell cut short goes back to pending (its folder is moved aside when it runs again)."""
    running = cells["status"] == "running"
    if running.any():
        cells.loc[running, "status"] = "pending"
        folder.write_cells(cells)


def _next_repeat(spec: ExperimentSpec, cells: pd.DataFrame) -> int | None:
    """Sequential stopping: the next repeat's number while some paired CI is wider than the target."""
    if spec.stop is None:
        return None
    repeats = int(cells["repeat"].max())
    done = cells[cells["status"] == "done"]
    if repeats >= spec.stop.max_repeats or done[spec.metric].isna().all():
        return None  # at the maximum, or nothing to narrow (no power source: more repeats cannot help)
    pairs = pair_differences(cells, spec.metric, spec.level, spec.multiplicity)
    widest = widest_half_width(pairs)
    return repeats + 1 if widest is None or widest > spec.stop.half_width else None


def _cell_line(row: dict[str, Any], total: int) -> str:
    rate = "own rates" if _rate(row) is None else f"{row['rate']:g} req/s"
    value = row["j_per_request_all_in"]
    energy = (
        f"{value:.3g} J/request all-in" if isinstance(value, float) and math.isfinite(value) else "no energy"
    )
    flags = f" · flags: {row['flags']}" if row["flags"] else ""
    return (
        f"cell {int(row['cell']) + 1}/{total} · repeat {row['repeat']} · {rate} · {row['arm']} "
        f"(position {int(row['position']) + 1}): {energy} · {row['ok']}/{row['requests']} ok{flags}"
    )


def resolved_data(spec: ExperimentSpec) -> dict[str, Any]:
    """experiment.yaml as written into the folder: every default filled in."""
    data = spec.model_dump(mode="json")
    data["target"] = spec.target.settings()
    # No credential in the folder: a URL's userinfo is redacted (a resume then takes --target URL).
    for section in (data["target"], data["power"]):
        for key, value in section.items():
            if isinstance(value, str) and "://" in value:
                section[key] = redact_userinfo(value)
    data["cooldown_s"] = spec.gap_s
    return data
