"""`joulebench plan build|describe`: build an arrival plan file, and show what a plan contains."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from foundation.errors import InputError
from foundation.user_warning import warn
from harness.cli.app import app
from harness.cli.plan_flags import EPILOG, PlanOptions, plan_options
from traffic.builder import build_plan
from traffic.describe import build_warnings, describe_plan
from traffic.plan import load_plan, save_plan

plan_app = typer.Typer(
    help="Build seeded, replayable arrival plans (prompts x schedules) and describe them.",
    no_args_is_help=True,
)
app.add_typer(plan_app, name="plan")


@plan_app.command("build", epilog=EPILOG)
@plan_options
def build(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Plan file to write (Parquet; a .json header copy is written beside it)."
        ),
    ],
    plan: PlanOptions,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the plan file's path.")] = False,
) -> None:
    """Build an arrival plan from a prompt source and one or more schedules (arms), and save it.

    Every arm replays the same prompt sequence; with --rate all open-loop arms get the same mean rate.
    Nothing is written unless the whole plan builds.
    """
    if out.suffix.lower() != ".parquet":
        raise InputError(f"--out {out}: the plan file must end in .parquet")
    if out.exists() and out.is_dir():
        raise InputError(f"--out {out}: is a folder")
    spec = plan.to_spec()
    err = Console(stderr=True)
    with err.status("building plan") as status:
        built = build_plan(spec, progress=lambda message: status.update(message))
        for warning in build_warnings(built):
            warn(warning)
        status.update("writing")
        try:
            save_plan(built, out)
        except OSError as exc:  # a missing or read-only folder, a full disk: the user's to fix
            raise InputError(f"--out {out}: cannot write the plan ({exc.strerror or exc})") from None
    if quiet:
        typer.echo(str(out))
        return
    summary = describe_plan(built)
    console = _console()
    console.print(
        f"wrote [bold]{out}[/bold]: {summary['n']} requests in {summary['arms_count']} arm(s), "
        f"plan_hash {summary['plan_hash'][:16]}"
    )
    console.print(_table(summary))


@plan_app.command("describe")
def describe(
    file: Annotated[Path, typer.Argument(help="A plan file written by `joulebench plan build`.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Show what a plan contains, per arm and overall.

    n, duration, target and realized mean rate, gap CV, burstiness, and a Kolmogorov-Smirnov test of
    the gaps against the requested distribution (see docs/plans.md).
    """
    summary = describe_plan(load_plan(file))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, allow_nan=False))
        return
    console = _console()
    source = summary["prompt_source"]
    console.print(f"plan_hash {summary['plan_hash']}  seed {summary['seed']}  {summary['n']} requests")
    console.print(f"prompts {source['spec']} ({source['kind']}, {source['content_hash']})")
    for note in summary["notes"]:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    console.print(_table(summary))


def _console() -> Console:
    # Piped output has no terminal width; rich would squeeze the table into 80 columns.
    console = Console()
    return console if console.is_terminal else Console(width=140)


def _table(summary: dict) -> Table:
    table = Table(show_lines=False)
    for column in ("arm", "n", "dur s", "target/s", "rate/s", "gap CV", "burst", "KS D", "KS p"):
        table.add_column(column, justify="left" if column == "arm" else "right", no_wrap=True)
    for arm in summary["arms"]:
        label = arm["name"] if arm["name"] == arm["kind"] else f"{arm['name']} ({arm['kind']})"
        if arm["closed_loop"]:
            label += f", {arm['users']} users"
        table.add_row(label, str(arm["n"]), *_numbers(arm, "target_rate"))
    if len(summary["arms"]) > 1:
        table.add_section()
        table.add_row("all", str(summary["n"]), *_numbers(summary, "target_mean_rate"))
    return table


def _numbers(row: dict, target_key: str) -> list[str]:
    keys = ("duration_s", target_key, "mean_rate", "gap_cv", "burstiness", "ks_statistic", "ks_pvalue")
    return ["-" if row.get(k) is None else f"{row[k]:.3g}" for k in keys]
