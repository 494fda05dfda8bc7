"""`joulebench run`: flags -> settings -> `harness.session.measured_run.run_measured` (docs/run.md)."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from foundation.errors import InputError
from foundation.flag_fields import check_choice
from harness.cli._typer_flags import FlagValues, model_options
from harness.cli.app import app
from harness.cli.plan_flags import EPILOG, PlanOptions, plan_options
from harness.experiment.definition import RUN_SETTINGS, ExperimentSpec
from harness.experiment.design import ORDERS, Order
from harness.runner import RunOptions
from harness.session.config import SOURCE_KINDS, MeasureConfig, ServerConfig, TargetConfig
from harness.session.embedded_stack import default_plan_spec, over_default_plan
from harness.session.measured_run import PlanSource, run_measured

_RUN = TargetConfig.FLAG_PANEL
_EXPERIMENT = "Experiment (repeats, order, rate sweeps)"


def _field_help(name: str) -> str:
    return ExperimentSpec.model_fields[name].description or ""


@app.command("run", epilog=EPILOG)
@plan_options
@model_options(TargetConfig, RunOptions, MeasureConfig)  # their fields declare the other flags
def run(
    plan: PlanOptions,
    flags: FlagValues,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="URL",
            help="Base URL of the server, e.g. http://127.0.0.1:8000. Without it: the embedded default "
            "(a mock server and a simulated power sidecar, started and stopped by joulebench; a built-in "
            "three-arm plan, which plan flags given change; --plan or --config replace it).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    plan_file: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            metavar="FILE",
            help="A plan from `joulebench plan build` (instead of the plan flags).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for run folders (each run gets <out>/<run_id>/).",
            rich_help_panel=_RUN,
        ),
    ] = Path("runs"),
    repeats: Annotated[
        int | None,
        typer.Option(
            help=f"Run every arm this many times as an experiment: {_field_help('repeats')} "
            "(docs/experiments.md). The run folders go into <out>/<experiment_id>/runs/.",
            min=1,
            show_default=False,
            rich_help_panel=_EXPERIMENT,
        ),
    ] = None,
    order: Annotated[
        str | None,
        typer.Option(
            metavar="|".join(ORDERS),
            help=f"Arm order per repeat (makes the run an experiment): {_field_help('order')}.",
            show_default=False,
            rich_help_panel=_EXPERIMENT,
        ),
    ] = None,
    cooldown: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help=f"Experiments: {_field_help('cooldown_s')}.",
            show_default=False,
            rich_help_panel=_EXPERIMENT,
        ),
    ] = None,
) -> None:
    """Send an arrival plan to an LLM server, log every request, measure GPU energy, report per request.

    Plan (--plan FILE or the plan flags) -> idle capture -> the plan, arm by arm -> idle capture ->
    power from the sources (--sidecar, --prometheus, --dcgm) -> energy join -> summary.json,
    energy.parquet, report.html and a table here. Without --target, everything runs on an embedded mock
    stack: `joulebench run` alone measures three arrival schedules and says which cost least per
    request. The run folder <out>/<run_id>/ also holds plan.parquet, requests.parquet,
    power.parquet, server_metrics.parquet and manifest.json. See docs/run.md.
    """
    if repeats is not None or order is not None or cooldown is not None or plan.rates is not None:
        if plan_file is not None:
            raise InputError("--plan: an experiment builds one plan per rate; give plan flags instead")
        if order is not None:
            check_choice("--order", order, Order)
        design = {"repeats": repeats, "order": order, "cooldown_s": cooldown}
        data = experiment_data(target, plan, flags, {k: v for k, v in design.items() if v is not None})
        from harness.experiment.start import run_experiment_data

        code = run_experiment_data(data, out, Console(stderr=True))
    else:
        code = run_measured(
            flags.build(TargetConfig, url=target),
            plan_source(plan_file, plan, embedded=target is None),
            flags.build(RunOptions),
            flags.build(MeasureConfig),
            out,
        )
    if code:
        raise typer.Exit(code)


def _refuse_single_run_flags(measure: MeasureConfig, options: RunOptions) -> None:
    """Flags an experiment has no field for are refused, never dropped in silence."""
    changed = [
        f.metadata["flag"].split()[0]
        for config, default in ((measure.server, ServerConfig()), (options, RunOptions()))
        for f in fields(config)
        if f.metadata.get("flag") and f.name not in (*RUN_SETTINGS, "info_file", "progress")
        and getattr(config, f.name) != getattr(default, f.name)
    ]  # fmt: skip
    if changed:
        raise InputError(f"{changed[0]}: not an experiment setting (a single run's only)")


def experiment_data(
    target: str | None, plan: PlanOptions, flags: FlagValues, design: dict[str, Any]
) -> dict[str, Any]:
    """The experiment that `joulebench run` with --repeats, --order, --cooldown or several rates stands
    for, as the YAML of `joulebench experiment run` would say it (validated there, one place)."""
    if target is None:
        plan = embedded_plan(plan)
    spec = replace(plan, rates=None).to_spec() if plan.given() else default_plan_spec()
    owned = {"schedules", "rate", "seed"}
    plan_settings = spec.model_dump(mode="json", exclude=owned, exclude_defaults=True)
    measure = flags.build(MeasureConfig)
    if measure.idle_s is not None:
        raise InputError("--idle: an experiment's idle windows are its cool-down (--cooldown SECONDS)")
    if measure.max_lateness_ms is not None:
        raise InputError("--max-lateness-ms: not an experiment setting (a single run's only)")
    options = flags.build(RunOptions)
    _refuse_single_run_flags(measure, options)
    runner = {f.name: getattr(options, f.name) for f in fields(RunOptions) if f.name in RUN_SETTINGS}
    tc = flags.build(TargetConfig, url=target)
    if tc.label is not None:
        raise InputError("--label: a single run's only (an experiment's name labels it)")
    power = measure.power
    power_data: dict[str, Any] = {k: v for k in SOURCE_KINDS if (v := getattr(power, k))}
    if power.primary:
        power_data["primary"] = power.primary
    if power.selector:
        power_data["selector"] = power.selector
    if power.gpus is not None:
        power_data["gpus"] = ",".join(power.gpus)
    power_data["prometheus_step_s"] = power.prometheus_step_s
    data: dict[str, Any] = {
        "name": "run",
        "target": "embedded"
        if target is None
        else {"url": target, "backend": tc.backend, "model": tc.model, "api_key_env": tc.api_key_env},
        "plan": plan_settings,
        "arms": spec.schedules,
        "seed": spec.seed,
        "method": measure.method,
        "strict": measure.strict,
        "slo_ttft_s": measure.slo_ttft_s,
        "slo_e2e_s": measure.slo_e2e_s,
        "run": runner,
        **design,
    }
    if plan.rates is not None:
        data["rates"] = plan.rates
    elif spec.rate is not None:
        data["rates"] = [spec.rate]
    if target is not None:
        data["power"] = power_data
        if measure.server.info_file is not None:
            data["server_info"] = str(measure.server.info_file)
    return data


def plan_source(plan_file: Path | None, flags: PlanOptions, embedded: bool) -> PlanSource:
    if plan_file is not None:
        if flags.given():
            raise InputError("--plan: give a plan file or plan flags (--prompts, --schedule, ...), not both")
        return PlanSource(file=plan_file)
    if embedded and flags.config is None:
        return PlanSource(spec=embedded_plan(flags).to_spec) if flags.given() else PlanSource()
    if flags.given():
        return PlanSource(spec=flags.to_spec)
    # The built-in plan is for the embedded mock, not for someone's server.
    raise InputError("--plan: give a plan file, or build one with plan flags (e.g. --schedule ... --n 100)")


def embedded_plan(flags: PlanOptions) -> PlanOptions:
    """The embedded default's plan: the plan flags given, laid over the built-in plan (a --config YAML
    is a whole plan of its own)."""
    if flags.config is not None:
        return flags
    return replace(flags, values=over_default_plan(flags.values))
