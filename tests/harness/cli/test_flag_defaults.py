"""Flags whose defaults and choices belong to a model show the model's own: the plan flags (of `plan build`
and `run`) PlanSpec's field defaults and Literals, `report`'s options AnalysisOptions' defaults."""

from __future__ import annotations

from typing import Literal, get_args, get_origin

import pytest
import typer
from joulebench_testkit import one_line_error, run_main

from harness.cli import _load_commands
from harness.cli.app import app
from harness.energy import AnalysisOptions
from traffic.spec import PlanSpec

for _command in ("plan", "run", "report"):
    _load_commands([_command])
COMMANDS = typer.main.get_command(app).commands
PLAN_COMMANDS = {"plan build": COMMANDS["plan"].commands["build"], "run": COMMANDS["run"]}
# Flags named unlike their PlanSpec field
SPEC_FIELD = {"--field": "fields", "--schedule": "schedules", "--policy": "policies"}
PLAN_OPTIONS = [
    (command, option)
    for command, click_command in PLAN_COMMANDS.items()
    for option in click_command.params
    if option.rich_help_panel == "Plan" and option.opts[0] != "--config"  # --config names a file
]
IDS = [f"{command} {option.opts[0]}" for command, option in PLAN_OPTIONS]


def _spec_field(option) -> str:
    flag = option.opts[0]
    return SPEC_FIELD.get(flag, flag.removeprefix("--").replace("-", "_"))


def _spec_default(name: str) -> object:
    return PlanSpec.model_fields[name].get_default(call_default_factory=True)


@pytest.mark.parametrize("command", PLAN_COMMANDS)
def test_every_spec_field_is_one_plan_flag(command) -> None:
    fields = [_spec_field(option) for name, option in PLAN_OPTIONS if name == command]
    assert sorted(fields) == sorted(PlanSpec.model_fields)


@pytest.mark.parametrize(("command", "option"), PLAN_OPTIONS, ids=IDS)
def test_the_default_shown_is_the_specs(command, option) -> None:
    assert option.default is None  # not given: a --config value or PlanSpec's default stands
    default = _spec_default(_spec_field(option))
    if default in (None, {}, []):
        return  # nothing applied: the help says in words what happens then
    if isinstance(default, bool):
        switch = option.opts[0].removeprefix("--")
        shown = switch if default else f"no-{switch}"
    else:
        shown = ", ".join(default) if isinstance(default, list) else str(default)
    assert option.help.endswith(f"(default: {shown})") and option.help.count("(default:") == 1


@pytest.mark.parametrize(("command", "option"), PLAN_OPTIONS, ids=IDS)
def test_choices_shown_are_the_specs_literal(command, option) -> None:
    annotation = PlanSpec.model_fields[_spec_field(option)].annotation
    if get_origin(annotation) is Literal:
        assert option.metavar == "|".join(get_args(annotation))


def test_conversation_is_a_literal_choice() -> None:
    """The choices test above checks something: --conversation's choices are a Literal."""
    assert get_args(PlanSpec.model_fields["conversation"].annotation) == ("first", "full")


def test_a_bad_choice_is_one_line_naming_the_flag(capsys, tmp_path) -> None:
    out = tmp_path / "plan.parquet"
    status = run_main(["plan", "build", "--conversation", "both", "-n", "3", "--out", str(out)])
    message = one_line_error(capsys.readouterr().err, status)
    assert message == "--conversation: Input should be 'first' or 'full' (got 'both')"
    assert not out.exists()


def test_report_defaults_are_the_analysis_defaults() -> None:
    defaults = {option.opts[0]: option.default for option in COMMANDS["report"].params}
    analysis = AnalysisOptions()
    assert defaults["--seed"] == analysis.bootstrap.seed
    assert defaults["--resamples"] == analysis.bootstrap.resamples
    assert defaults["--min-coverage"] == analysis.min_coverage
