"""Start, resume and report an experiment: what the `joulebench experiment` commands call.

Everything that can be checked is checked before the experiment folder exists (the YAML, every
rate's plan, a URL target's protocol), and a folder whose first cell never ran is removed again when
the target fails to come up: bad input leaves no partial folder behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from foundation.errors import InputError
from foundation.redact import REDACTED
from foundation.user_warning import warn
from harness.backends import resolve_target
from harness.deploy.cmdline import REDACTED as SECRET_REDACTED
from harness.experiment.conduct import conduct, refigure_cells, resolved_data
from harness.experiment.definition import ExperimentSpec, apply_overrides, load_experiment, parse_experiment
from harness.experiment.report_writer import write_experiment_report
from harness.runfolder.experiment_files import ExperimentFolder
from traffic.builder import build_plan
from traffic.describe import build_warnings
from traffic.plan import save_plan


def start_experiment(file: Path, overrides: dict[str, Any], out: Path, console: Console) -> int:
    return _start(load_experiment(file, overrides), str(file), out, console)


def run_experiment_data(data: dict[str, Any], out: Path, console: Console) -> int:
    """An experiment given as data (what `joulebench run --repeats ...` stands for)."""
    return _start(parse_experiment(data, "joulebench run"), "joulebench run", out, console)


def _start(spec: ExperimentSpec, label: str, out: Path, console: Console) -> int:
    with console.status("building the plans"):
        plans = {rate: build_plan(spec.plan_spec(rate, label)) for rate in spec.rate_list}
    for warning in {w for plan in plans.values() for w in build_warnings(plan)}:
        warn(warning)
    if spec.target.kind == "url":
        _probe(spec, label)
    folder = ExperimentFolder.create(out, spec.name, resolved_data(spec))
    folder.plans.mkdir()
    for rate, plan in plans.items():
        save_plan(plan, folder.plan_path(rate))
    try:
        code = conduct(spec, folder, console)
    except InputError:
        if not _any_cell_ran(folder):
            shutil.rmtree(folder.path, ignore_errors=True)
        raise
    write_experiment_report(folder, spec, console)
    return code


# What a resume may change: where the server and the power are (a lost machine comes back elsewhere),
# how much is run, how strictly it is judged. Never what the cells are: their design and plans are fixed.
RESUMABLE = ("target", "power", "server_info", "repeats", "stop", "strict", "cell_reports")


def resume_experiment(path: Path, overrides: dict[str, Any], console: Console) -> int:
    folder = ExperimentFolder.open(path)
    data = folder.spec_data()
    for key in overrides:
        if key.split(".")[0] not in RESUMABLE:
            raise InputError(
                f"--set {key}: cannot change on resume (the cells' design and plans are fixed); "
                f"what can: {', '.join(RESUMABLE)}"
            )
    before = parse_experiment(data, str(path / folder.SPEC), check_plans=False).target.kind
    apply_overrides(data, overrides)
    label = str(path / folder.SPEC)
    hidden = _redacted(data)
    if hidden:
        how = f"--target URL or --set {hidden}=URL" if hidden == "target.url" else f"--set {hidden}=..."
        raise InputError(f"{label}: {hidden}: its credentials were not written down; give it again ({how})")
    spec = parse_experiment(data, label, check_plans=False)  # the plans are in plans/, built once
    if spec.target.kind != before:  # pooling simulated and measured cells, or two setups, would mislead
        raise InputError(
            f"--target: the experiment ran on a {before} target; a resume cannot make it {spec.target.kind}"
        )
    if spec.target.kind == "url":
        _probe(spec, label)
    if overrides:
        folder.write_spec(resolved_data(spec))
        console.print(f"{label}: updated ({', '.join(overrides)})")
    code = conduct(spec, folder, console)
    write_experiment_report(folder, spec, console)
    return code


def report_experiment(path: Path, console: Console, refigure: bool = False) -> None:
    """`refigure`: read every done cell's figures from its run folder again first (after `joulebench
    report` rebuilt a run, or when this version computes a figure differently)."""
    folder = ExperimentFolder.open(path)
    spec = parse_experiment(folder.spec_data(), str(path / folder.SPEC), check_plans=False)
    if not folder.has_cells():
        raise InputError(f"{path}: no cells.parquet yet (no cell has run)")
    if refigure:
        with folder.lock():  # it rewrites the table: not under a running experiment
            refigure_cells(spec, folder)
    write_experiment_report(folder, spec, console)


def _probe(spec: ExperimentSpec, label: str) -> None:
    """The target answers and speaks a protocol we know (before any folder is made)."""
    target = spec.target
    assert target.url is not None
    api_key = os.environ.get(target.api_key_env) or None
    try:
        asyncio.run(resolve_target(target.url, target.backend, target.model, api_key))
    except InputError as exc:  # resolve_target speaks of the --target flag; here it is the file's field
        raise InputError(f"{label}: target: {str(exc).removeprefix('--target ')}") from None


def _redacted(data: dict[str, Any]) -> str | None:
    """The first URL field whose userinfo experiment.yaml holds redacted."""
    for section in ("target", "power"):
        values = data.get(section)
        for key, value in values.items() if isinstance(values, dict) else []:
            if isinstance(value, str) and REDACTED in value:
                return f"{section}.{key}"
            held = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
            if any(isinstance(v, str) and SECRET_REDACTED in v for v in held):  # a serve target's flags, env
                return f"{section}.{key}"
    return None


def _any_cell_ran(folder: ExperimentFolder) -> bool:
    return folder.runs.is_dir() and any(folder.runs.iterdir())
