"""`joulebench run`'s flags come from the models they set: one option per field declared a flag, with
the model's default, and closed choices from the model's Literals (help, check and message alike)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
import typer
from joulebench_testkit import one_line_error, run_main

from harness.backends.client import TRANSPORTS
from harness.backends.detect import BACKEND_CHOICES
from harness.cli import _load_commands, run_command
from harness.cli.app import app
from harness.experiment.definition import ExperimentSpec
from harness.records import Shard
from harness.runner import RunOptions
from harness.runner.options import TransportSetting
from harness.session.config import (
    MeasureConfig,
    Method,
    PowerConfig,
    ServerConfig,
    SourceKind,
    TargetConfig,
)

MODELS = [TargetConfig, RunOptions, PowerConfig, ServerConfig, MeasureConfig]
FIELDS = [(model, field) for model in MODELS for field in dataclasses.fields(model)]
FLAG_FIELDS = [(model, field) for model, field in FIELDS if field.metadata.get("flag")]
OWN = {"--target", "--plan", "--out"}  # the run command's own: they pick the target, the plan, the folder

_load_commands(["run"])
RUN = typer.main.get_command(app).commands["run"]
OPTIONS = [param for param in RUN.params if param.param_type_name == "option"]


def _long(usage: str) -> str:
    """--sidecar URL -> --sidecar, --stream/--no-stream -> --stream."""
    return usage.split()[0].split("/")[0]


def _default(field: dataclasses.Field) -> object:
    return field.default if field.default_factory is dataclasses.MISSING else field.default_factory()


@pytest.mark.parametrize(("model", "field"), FIELDS, ids=[f"{m.__name__}.{f.name}" for m, f in FIELDS])
def test_every_field_says_whether_it_is_a_flag(model, field) -> None:
    nested = dataclasses.is_dataclass(get_type_hints(model)[field.name]) and "flag" not in field.metadata
    assert "flag" in field.metadata or nested, "declare its flag, or {'flag': None} with the reason why not"


@pytest.mark.parametrize(
    ("model", "field"), FLAG_FIELDS, ids=[f"{m.__name__}.{f.name}" for m, f in FLAG_FIELDS]
)
def test_each_flag_field_has_one_option_with_the_models_default(model, field) -> None:
    flag = _long(field.metadata["flag"])
    (option,) = [param for param in OPTIONS if flag in param.opts]
    assert option.default == _default(field)
    assert option.rich_help_panel == model.FLAG_PANEL and option.help == field.metadata["help"]


def test_every_option_is_a_model_field_a_plan_flag_or_the_commands_own() -> None:
    declared = {_long(field.metadata["flag"]) for _, field in FLAG_FIELDS}
    for option in OPTIONS:
        (name,) = [opt for opt in option.opts if opt.startswith("--")]
        assert name in declared or name in OWN or option.rich_help_panel == "Plan" or _experiment(option), (
            name
        )


# The experiment flags of `run` and the ExperimentSpec fields they set: their help is the field's.
EXPERIMENT_FLAGS = {"--repeats": "repeats", "--order": "order", "--cooldown": "cooldown_s"}


def _experiment(option) -> bool:
    (name,) = [opt for opt in option.opts if opt.startswith("--")]
    field = EXPERIMENT_FLAGS.get(name)
    return field is not None and ExperimentSpec.model_fields[field].description in option.help


def test_choices_shown_are_the_literals() -> None:
    metavars = {option.opts[0]: option.metavar for option in OPTIONS}
    assert metavars["--method"] == "|".join(get_args(Method))
    assert metavars["--primary"] == "|".join(get_args(SourceKind))
    assert metavars["--transport"] == "|".join(get_args(TransportSetting)) == "|".join(("auto", *TRANSPORTS))


def _captured_run(monkeypatch, capsys, *args: str) -> tuple:
    seen: list[tuple] = []
    monkeypatch.setattr(run_command, "run_measured", lambda *a: seen.append(a) or 0)
    assert run_main(["run", *args]) == 0, capsys.readouterr().err
    (call,) = seen
    return call


def test_no_flags_give_the_models_defaults(monkeypatch, capsys) -> None:
    target, _, options, measure, out = _captured_run(monkeypatch, capsys)
    assert (target, options, measure, out) == (
        TargetConfig(url=None),
        RunOptions(),
        MeasureConfig(),
        Path("runs"),
    )


def test_flags_reach_the_models_converted(monkeypatch, capsys, tmp_path) -> None:
    info = tmp_path / "server.json"
    target, _, options, measure, _ = _captured_run(
        monkeypatch, capsys, "--target", "http://h:1", "--n", "3", "--backend", "tgi", "--no-stream",
        "--warmup", "3", "--max-rate", "2.5", "--shard", "1/2", "--transport", "httpx", "--dcgm", "http://d",
        "--primary", "dcgm", "--gpus", "0,2", "--idle", "0", "--method", "tokens", "--strict",
        "--server-container", "vllm", "--restart-server", "--server-info", str(info),
    )  # fmt: skip
    assert target == TargetConfig(url="http://h:1", backend="tgi")
    assert options == RunOptions(stream=False, warmup=3, max_rate=2.5, shard=Shard(1, 2), transport="httpx")
    assert measure == MeasureConfig(
        power=PowerConfig(dcgm="http://d", primary="dcgm", gpus=("0", "2")),
        server=ServerConfig(container="vllm", restart=True, info_file=info),
        idle_s=0.0,
        method="tokens",
        strict=True,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "joules"], f"--method 'joules': expected one of {', '.join(get_args(Method))}"),
        (["--transport", "curl"], f"--transport 'curl': expected one of auto, {', '.join(TRANSPORTS)}"),
        (["--primary", "nvml"], f"--primary 'nvml': expected one of {', '.join(get_args(SourceKind))}"),
        (["--backend", "vllm"], f"--backend 'vllm': expected one of {', '.join(BACKEND_CHOICES)}"),
        (["--timeout", "soon"], "--timeout: expected a number, got 'soon'"),
        (["--warmup", "1.5"], "--warmup: expected an integer, got '1.5'"),
        (["--shard", "1"], "--shard '1': expected I/N, e.g. 0/4"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag(args, message, capsys, tmp_path) -> None:
    status = run_main(["run", *args, "--out", str(tmp_path / "runs")])
    assert one_line_error(capsys.readouterr().err, status) == message
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "2", "--rate", "4"],
         "--rate: given 2 times (2, 4); give several rates as one list: --rate 2,4"),
        (["--rate", "2,x"], "--rate '2,x': 'x' is not a number of requests/s"),
        (["--rate", "2,0"], "--rate '2,0': rates must be positive requests/s"),
        (["--rate", "2,2"], "--rate '2,2': a rate is given twice"),
        (["--repeats", "2", "--idle", "3"],
         "--idle: an experiment's idle windows are its cool-down (--cooldown SECONDS)"),
        (["--order", "shuffled"], "--order 'shuffled': expected one of random, latin, fixed"),
        (["--repeats", "2", "--server-metrics", "off"],
         "--server-metrics: not an experiment setting (a single run's only)"),
        (["--rate", "2,4", "--arm-gap", "3"],
         "--arm-gap: not an experiment setting (a single run's only)"),
        (["--repeats", "2", "--max-lateness-ms", "50"],
         "--max-lateness-ms: not an experiment setting (a single run's only)"),
        (["--schedule", "poisson:rate=3,name=p", "--rate", "2,4"],
         "arms: p has its own rate=, which would win over rates (every cell of it at that rate): leave "
         "rate= out of the arms of a rate sweep (for fixed, give interval= instead)"),
        (["--repeats", "2", "--label", "x"], "--label: a single run's only (an experiment's name labels it)"),
        (["--repeats", "2", "--plan", "p.parquet"],
         "--plan: an experiment builds one plan per rate; give plan flags instead"),
    ],
)  # fmt: skip
def test_repeats_order_and_rate_lists_check_their_values(args, message, capsys, tmp_path) -> None:
    """--rate once, as a list; a repeated --rate is refused (it used to keep the last value silently)."""
    status = run_main(
        ["run", "--schedule", "fixed:interval=0.5", "-n", "2", *args, "--out", str(tmp_path / "o")]
    )
    assert one_line_error(capsys.readouterr().err, status).removeprefix("joulebench run: ") == message
    assert not (tmp_path / "o").exists()


def test_a_plan_has_one_rate(capsys, tmp_path) -> None:
    status = run_main(["plan", "build", "--schedule", "fixed:interval=0.5", "-n", "2", "--rate", "2,4",
                       "--out", str(tmp_path / "p.parquet")])  # fmt: skip
    assert one_line_error(capsys.readouterr().err, status).startswith("--rate 2,4: a plan has one rate")


def test_run_with_repeats_is_the_experiment_its_flags_describe(tmp_path, monkeypatch) -> None:
    """The flags become the experiment YAML `experiment run` would take, validated in the same place."""
    import harness.experiment.start as start
    from harness.experiment.definition import parse_experiment

    seen: dict = {}
    monkeypatch.setattr(start, "run_experiment_data", lambda data, out, console: seen.update(data) or 0)
    status = run_main(["run", "--target", "http://127.0.0.1:9", "--sidecar", "http://127.0.0.1:9400",
                       "--schedule", "fixed:interval=0.5", "--schedule", "uniform:low=0.1,high=0.5", "-n",
                       "5", "--max-tokens", "16", "--rate", "2,4", "--repeats", "3", "--order", "latin",
                       "--cooldown", "4", "--warmup", "0", "--method", "tokens", "--gpus", "0,1",
                       "--slo-ttft", "2", "--out", str(tmp_path)])  # fmt: skip
    assert status == 0
    spec = parse_experiment(seen, "test")
    assert spec.arms == ["fixed:interval=0.5", "uniform:low=0.1,high=0.5"] and spec.rates == [2.0, 4.0]
    assert (spec.repeats, spec.order, spec.gap_s, spec.method) == (3, "latin", 4.0, "tokens")
    assert (spec.slo_ttft_s, spec.slo_e2e_s) == (2.0, None)
    assert spec.plan == {"n": 5, "max_tokens": 16} and spec.run["warmup"] == 0
    assert spec.target.url == "http://127.0.0.1:9" and spec.power.sidecar == "http://127.0.0.1:9400"
    assert spec.power.gpus == "0,1"
