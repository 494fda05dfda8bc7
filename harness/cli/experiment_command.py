"""`joulebench experiment run|resume|report`: arms x rates x repeats from one YAML file.

See docs/experiments.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from foundation.errors import InputError
from harness.cli.app import app
from harness.cli.plan_flags import parse_rate_list
from harness.experiment.definition import field_docs
from harness.experiment.design import ORDERS

experiment_app = typer.Typer(
    help="Compare arms over repeats in random order, with paired confidence intervals (docs/experiments.md).",
    no_args_is_help=True,
)
app.add_typer(experiment_app, name="experiment")

_FIELDS = escape(
    "Experiment file fields (YAML; nested ones dotted, as --set takes them):\n"
    + "\n".join(f"  {name} [{default}]: {text}" for name, default, text in field_docs())
)


@experiment_app.command("run", epilog=_FIELDS)
def run(
    file: Annotated[Path, typer.Argument(help="The experiment file (YAML).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for experiment folders.")] = Path(
        "experiments"
    ),
    repeats: Annotated[int | None, typer.Option(help="Override repeats.", show_default=False)] = None,
    order: Annotated[
        str | None, typer.Option(help=f"Override order: {', '.join(ORDERS)}.", show_default=False)
    ] = None,
    rates: Annotated[
        str | None, typer.Option(help="Override rates: REQ/S[,REQ/S...].", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override seed.", show_default=False)] = None,
    cooldown: Annotated[float | None, typer.Option(help="Override cooldown_s.", show_default=False)] = None,
    target: Annotated[
        str | None, typer.Option(help="Override target: embedded or a URL.", show_default=False)
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="FIELD=VALUE (YAML value; dotted for nested), repeatable.", show_default=False
        ),
    ] = None,
) -> None:
    """Run an experiment: every (repeat, rate, arm) cell is one measured run in experiments/<id>/runs/.

    Each repeat runs the arms in a fresh seeded random order (or a Williams Latin square) with a
    cool-down between cells; every cell of a rate sends the same prompts at the same offered arrivals,
    so arms are compared paired within a repeat. The table (cells.parquet, cells.csv) is written after
    every cell; `joulebench experiment resume DIR` runs only what is missing. The report says which
    arms differ: a winner only where the confidence interval over repeats excludes zero.
    """
    from harness.experiment.start import start_experiment

    overrides: dict[str, Any] = {}
    for key, value in (("repeats", repeats), ("order", order), ("seed", seed), ("cooldown_s", cooldown)):
        if value is not None:
            overrides[key] = value
    if rates is not None:
        overrides["rates"] = parse_rate_list(rates, "--rates")
    if target is not None:
        overrides["target"] = target
    overrides.update(_set_values(set_))
    _exit(start_experiment(file, overrides, out, Console(stderr=True)))


@experiment_app.command("resume")
def resume(
    folder: Annotated[Path, typer.Argument(help="The experiment folder.", show_default=False)],
    target: Annotated[
        str | None, typer.Option(help="Where the server is now: embedded or a URL.", show_default=False)
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="FIELD=VALUE for target.*, power.*, server_info, repeats, stop.*, strict or cell_reports "
            "(a lost machine comes back elsewhere; more repeats); written into experiment.yaml.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Continue an interrupted experiment: only the cells that are not done run (a done cell never again).

    A cell that was running when the experiment stopped runs again; its partial run folder is moved to
    abandoned/. The plans are the ones saved in plans/, so the same requests are sent.
    """
    from harness.experiment.start import resume_experiment

    overrides = _set_values(set_)
    if target is not None:
        overrides["target"] = target
    _exit(resume_experiment(folder, overrides, Console(stderr=True)))


@experiment_app.command("report")
def report(
    folder: Annotated[Path, typer.Argument(help="The experiment folder.", show_default=False)],
    refigure: Annotated[
        bool,
        typer.Option(
            "--refigure",
            help="First read every done cell's figures from its run folder again (cells.parquet and "
            "cells.csv are rewritten).",
        ),
    ] = False,
) -> None:
    """Rebuild report.html, experiment_summary.json and the plots from cells.parquet."""
    from harness.experiment.start import report_experiment

    report_experiment(folder, Console(stderr=True), refigure=refigure)


def _set_values(items: list[str] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected FIELD=VALUE")
        values[key.strip()] = _yaml_value(item, text)
    return values


def _yaml_value(item: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(f"--set {item!r}: the value is not valid YAML") from None


def _exit(code: int) -> None:
    if code:
        raise typer.Exit(code)
