"""`ExperimentSpec`: one YAML file that says what an experiment compares, against what, and how often.

Every field has a description: `joulebench experiment run --help` and docs/experiments.md list them
from this model (tests/test_experiment_docs.py keeps the page in step). Problems become one
`InputError` line naming the file and the field (`exp.yaml: arms[2]: ...`).

    target: embedded            # or a URL, {serve: vllm, model: PATH, ...}, {compose: PROFILE, ...}
    plan: {prompts: synthetic, n: 40, max_tokens: 64, ignore_eos: true}
    arms: [fixed:interval=0.25, "bursty:size=8,intra=0.01,gap=2"]
    rates: [2, 4, 8]
    repeats: 4
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from foundation.errors import InputError
from foundation.redact import redact_userinfo
from harness.backends.detect import Backend
from harness.deploy.cmdline import REDACTED, is_secret_name, redact_argv
from harness.energy.repeats import Multiplicity
from harness.energy.split import Method
from harness.experiment.design import Order
from harness.runner import RunOptions
from harness.session.config import IDLE_SIMULATED_S, SourceKind
from traffic.schedules import arm_names, parse_schedule
from traffic.shaping import parse_policy
from traffic.spec import PlanSpec, schedule_text, shaped_arm_names

Metric = Literal["j_per_request_all_in", "j_per_request_attributed", "j_above_idle_per_request"]
# The idle window before each cell: above the join's 10 s minimum for a window (two updates of a 100 ms
# counter are then under 2% of it) with room for sampling; a single run's 30 s buys more, but an
# experiment pays it once per cell.
COOLDOWN_REAL_S = 12.0
COOLDOWN_SIMULATED_S = IDLE_SIMULATED_S  # the simulated counter is exact: a short window will do
# Plan settings an experiment owns itself: the arms are its schedules, the rates its offered loads.
_PLAN_OWNED = ("schedules", "rate", "seed")
# Run settings that belong to one run, not to a cell of an experiment (and the runner's own record
# of why `transport: auto` took a transport).
_RUN_OWNED = ("shard", "start_at_epoch_s", "progress", "precise_timer", "arm_gap_s", "transport_reason")
RUN_SETTINGS = tuple(f.name for f in dataclass_fields(RunOptions) if f.name not in _RUN_OWNED)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TargetSpec(_Strict):
    """The server under test. In YAML: `embedded`, a URL, or a mapping with one of url/serve/compose."""

    kind: Literal["embedded", "url", "serve", "compose"] = Field(
        json_schema_extra={"shown_default": "(from the form)"},
        description="embedded: the mock server and a simulated sidecar, started once for the whole "
        "experiment; url: a running server; serve: a server joulebench starts natively; compose: a "
        "docker compose profile",
    )
    url: str | None = Field(None, description="url: the server's base URL; compose: where it serves")
    backend: Backend = Field("auto", description="protocol: auto, openai-chat, openai-completions, tgi")
    model: str | None = Field(
        None, description="model name for OpenAI requests (default: the server's first)"
    )
    api_key_env: str = Field("JOULEBENCH_API_KEY", description="environment variable holding the API key")
    serve: Literal["vllm", "tgi", "transformers"] | None = Field(None, description="serve: the engine")
    model_path: str | None = Field(None, description="serve: the model folder or hub id the engine loads")
    port: int = Field(8000, ge=1, le=65535, description="serve: the port it listens on (127.0.0.1)")
    args: list[str] = Field(default_factory=list, description="serve: the engine's own flags")
    env: dict[str, str] = Field(default_factory=dict, description="serve: extra environment")
    python: str | None = Field(None, description="serve vllm: the interpreter that has vLLM")
    tensor_parallel_size: int | None = Field(
        None, ge=1, description="serve vllm: the GPUs the model is split over (power.gpus lists them)"
    )
    health_timeout_s: float = Field(600.0, gt=0, description="serve/compose: how long to wait for health")
    mock_args: list[str] = Field(
        default_factory=list,
        description="embedded: more mock-server flags, e.g. [--set, step_time.drift_cv=0.1]",
    )
    compose: str | None = Field(None, description="compose: the profile (vllm, tgi, mock)")
    compose_file: str = Field("docker-compose.yml", description="compose: the compose file")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"kind": "embedded"} if value == "embedded" else {"kind": "url", "url": value}
        if isinstance(value, Mapping) and "kind" not in value:
            kinds = [k for k in ("serve", "compose", "url") if k in value]
            if not kinds:
                raise ValueError("give 'embedded', a URL, or a mapping with url:, serve: or compose:")
            return {"kind": kinds[0], **value}
        return value

    @model_validator(mode="after")
    def _complete(self) -> TargetSpec:
        if self.kind == "url" and not self.url:
            raise ValueError("url: the server's base URL is missing")
        if self.kind == "serve" and not self.model_path:
            raise ValueError("serve: needs model_path (the model the engine loads)")
        if self.kind == "compose" and not self.url:
            raise ValueError("compose: needs url (where the profile's server listens)")
        if self.tensor_parallel_size is not None and self.serve != "vllm":
            raise ValueError("tensor_parallel_size: only for serve: vllm")
        return self

    def settings(self) -> dict[str, Any]:
        """The fields that apply to this kind of target, as experiment.yaml records them."""
        used = {
            "embedded": ("kind", "mock_args"),
            "url": ("kind", "url", "backend", "model", "api_key_env"),
            "serve": ("kind", "serve", "model_path", "port", "args", "env", "python", "tensor_parallel_size",
                      "health_timeout_s", "backend", "model", "api_key_env"),
            "compose": ("kind", "compose", "compose_file", "url", "health_timeout_s", "backend", "model",
                        "api_key_env"),
        }[self.kind]  # fmt: skip
        data = self.model_dump(mode="json")
        # Written into the experiment folder: no secret in the engine's flags or environment.
        data["args"] = redact_argv(self.args)
        data["env"] = {k: REDACTED if is_secret_name(k) else v for k, v in self.env.items()}
        return {key: data[key] for key in used if data[key] is not None}

    def describe(self) -> str:
        if self.kind == "embedded":
            return "embedded mock server (simulated GPU)"
        if self.kind == "serve":
            return f"joulebench serve {self.serve} {self.model_path} on port {self.port}"
        if self.kind == "compose":
            return f"docker compose profile {self.compose} at {redact_userinfo(str(self.url))}"
        return redact_userinfo(str(self.url))


class PowerSpec(_Strict):
    """Power sources of a URL, serve or compose target (the embedded target brings its own)."""

    sidecar: str | None = Field(None, description="the power sidecar's URL (its /samples)")
    prometheus: str | None = Field(None, description="a Prometheus scraping the sidecar")
    dcgm: str | None = Field(None, description="a Prometheus scraping dcgm-exporter")
    primary: SourceKind | None = Field(
        None, description="the source the join uses (default: the first given)"
    )
    selector: str = Field("", description="PromQL label matchers for prometheus/dcgm")
    gpus: str | None = Field(None, description="the GPUs serving the model: all or 0,1,...")
    prometheus_step_s: float = Field(1.0, gt=0, description="query resolution for prometheus/dcgm")


class SteadyState(_Strict):
    """Drop ramp-up and drain from each cell's extra, steady-state figure (the main figure keeps them)."""

    skip_s: float = Field(0.0, ge=0, description="drop requests planned before this many seconds")
    drain_s: float = Field(0.0, ge=0, description="drop requests planned in the arm's last seconds")
    skip_requests: int = Field(0, ge=0, description="drop the arm's first requests")
    drain_requests: int = Field(0, ge=0, description="drop the arm's last requests")


class Stopping(_Strict):
    """Sequential stopping: add repeats until every paired CI is narrow enough, or max_repeats."""

    half_width: float = Field(gt=0, description="target half-width of every paired CI (metric's unit)")
    max_repeats: int = Field(gt=1, description="never more repeats than this")


class ExperimentSpec(_Strict):
    """An experiment: arms x rates x repeats, each (repeat, rate, arm) one measured run."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="label in the id")
    target: TargetSpec = Field(description="embedded, a URL, {serve: ...} or {compose: ...}")
    power: PowerSpec = Field(
        default_factory=lambda: PowerSpec.model_validate({}), description="power sources (not for embedded)"
    )
    server_info: str | None = Field(None, description="server.json of a natively started server")
    plan: dict[str, Any] = Field(
        default_factory=dict,
        description="plan settings as in `plan build --config` (not schedules, rate, seed)",
    )
    arms: list[str] = Field(description="the arms: schedules as in --schedule (name=... names them)")
    rates: list[float] | None = Field(
        None,
        description="offered loads in requests/s, each arm load-matched to each (default: the arms' own)",
    )
    repeats: int = Field(3, ge=1, description="repeats of every (rate, arm) cell")
    order: Order = Field(
        "random", description="arm order per repeat: random (fresh seeded), latin (Williams square), fixed"
    )
    cooldown_s: float | None = Field(
        None,
        ge=0,
        description="idle gap before every cell, measured as that cell's idle power "
        f"(default: {COOLDOWN_REAL_S:g} s; {COOLDOWN_SIMULATED_S:g} s on the embedded mock, whose counter "
        "is exact)",
    )
    seed: int = Field(
        0, ge=0, description="seeds the plan (the same prompts and arrivals in every cell) and order"
    )
    steady_state: SteadyState | None = Field(None, description="an extra figure without ramp-up and drain")
    stop: Stopping | None = Field(None, description="sequential stopping (repeats is then the minimum)")
    metric: Metric = Field("j_per_request_all_in", description="the figure the verdict compares")
    level: float = Field(0.95, gt=0.5, lt=1, description="confidence level of every interval")
    multiplicity: Multiplicity = Field(
        "bonferroni", description="correction over the pairs: bonferroni or none"
    )
    method: Method = Field(
        "time", description="how energy is split among requests in flight: time, tokens or steps"
    )
    strict: bool = Field(False, description="exit 1 when a cell has an error flag")
    slo_ttft_s: float | None = Field(
        None,
        gt=0,
        description="SLO on time to first token from the user's arrival (a shaping policy's hold "
        "included): each cell's goodput counts the requests within it (default: none, no goodput)",
    )
    slo_e2e_s: float | None = Field(
        None, gt=0, description="SLO on end-to-end latency from the user's arrival, as for slo_ttft_s"
    )
    cell_reports: bool = Field(True, description="write each cell's report.html (plots take a second each)")
    run: dict[str, Any] = Field(
        default_factory=dict, description="runner settings: stream, warmup, timeout_s, max_concurrency, ..."
    )

    @field_validator("arms")
    @classmethod
    def _check_arms(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one arm")
        for i, text in enumerate(value):
            try:
                parse_schedule(text)
            except ValueError as exc:
                raise ValueError(f"[{i}] {text!r}: {exc}") from None
        try:
            arm_names([parse_schedule(text) for text in value])
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("rates")
    @classmethod
    def _check_rates(cls, value: list[float] | None) -> list[float] | None:
        if value is not None:
            if not value or any(r <= 0 for r in value):
                raise ValueError("rates must be positive requests/s")
            if len({f"{r:g}" for r in value}) != len(value):
                raise ValueError("a rate is given twice (rates are told apart by 6 significant digits)")
        return value

    @field_validator("plan")
    @classmethod
    def _check_plan(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = [k for k in _PLAN_OWNED if k in value]
        if owned:
            raise ValueError(f"{owned[0]}: set by the experiment (arms, rates, seed), not in plan")
        return value

    @field_validator("run")
    @classmethod
    def _check_run(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key not in RUN_SETTINGS:
                raise ValueError(f"{key}: not a runner setting of a cell (known: {', '.join(RUN_SETTINGS)})")
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> ExperimentSpec:
        if self.target.kind == "embedded":
            given = [k for k in ("sidecar", "prometheus", "dcgm") if getattr(self.power, k)]
            if given or self.server_info:
                raise ValueError("power/server_info: the embedded target brings its own")
        names = list(zip(self.schedule_names, self.arms, strict=True))
        closed = [name for name, text in names if text.startswith("concurrency")]
        if self.rates is not None and closed:
            raise ValueError(
                f"arms: {closed[0]} is closed-loop: it takes no offered rate, so it cannot join a rate sweep"
            )
        # An arm's own rate= wins over the offered rate (traffic.schedules.resolve): in a sweep its
        # cells would be labelled with a rate they were not sent at.
        own = [name for name, text in names if "rate" in parse_schedule(text).params]
        if self.rates is not None and own:
            raise ValueError(
                f"arms: {own[0]} has its own rate=, which would win over rates (every cell of it at that "
                "rate): leave rate= out of the arms of a rate sweep (for fixed, give interval= instead)"
            )
        if self.stop is not None and self.stop.max_repeats < self.repeats:
            raise ValueError("stop.max_repeats is below repeats")
        return self

    # --- what the cells run ----------------------------------------------------------------------

    @property
    def rate_list(self) -> list[float | None]:
        """The offered rates; [None]: the arms' own rates."""
        return list(self.rates) if self.rates else [None]

    @property
    def schedule_names(self) -> list[str]:
        """The schedules' names (a schedule's name=, else one made from it), in the order listed."""
        return arm_names([parse_schedule(text) for text in self.arms])

    @property
    def arm_names(self) -> list[str]:
        """The plan's arms: the schedules, or with `plan.policies` each schedule x each policy
        (`<schedule>+<policy>`), as the plan names them."""
        policies = self.plan.get("policies") or []
        texts = [policies] if isinstance(policies, str) else list(policies)
        return shaped_arm_names(self.schedule_names, [parse_policy(str(text)).name for text in texts])

    @property
    def gap_s(self) -> float:
        """The cool-down in effect."""
        if self.cooldown_s is not None:
            return self.cooldown_s
        return COOLDOWN_SIMULATED_S if self.target.kind == "embedded" else COOLDOWN_REAL_S

    def plan_spec(self, rate: float | None, label: str) -> PlanSpec:
        """The whole plan of one offered rate: every arm over the same prompts (built once, then each
        cell sends its arm's rows: common random numbers across arms and repeats)."""
        data = {**self.plan, "schedules": self.arms, "rate": rate, "seed": self.seed}
        return PlanSpec.parse(data, label=lambda path: f"{label}: {_plan_path(path)}")

    def run_options(self, label: str) -> RunOptions:
        hints = get_type_hints(RunOptions)
        values: dict[str, Any] = {"progress": False}
        for key, value in self.run.items():
            try:
                values[key] = TypeAdapter(hints[key]).validate_python(value)
            except ValidationError as exc:
                message = exc.errors()[0]["msg"]
                raise InputError(f"{label}: run.{key}: {message} (got {value!r})") from None
        try:
            return RunOptions(**values).validate()
        except InputError as exc:
            raise InputError(f"{label}: run: {exc}") from None


def _plan_path(path: str) -> str:
    head = path.split("[")[0]
    return f"arms{path[len('schedules') :]}" if head == "schedules" else f"plan.{path}"


def load_experiment(path: Path, overrides: Mapping[str, Any] | None = None) -> ExperimentSpec:
    """Read and validate an experiment file; `overrides` (dotted keys from flags) replace its fields."""
    if not path.is_file():
        raise InputError(f"{path}: experiment file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of experiment settings at the top level")
    apply_overrides(data, overrides or {})
    return parse_experiment(data, str(path))


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Set dotted keys (`plan.n`, `target`) in experiment data, as --set and the flags give them."""
    for key, value in overrides.items():
        _set_dotted(data, key, value)


def parse_experiment(data: Mapping[str, Any], label: str, check_plans: bool = True) -> ExperimentSpec:
    """`check_plans`: build-check every rate's plan settings now (off for reports of a finished
    experiment, whose prompt files and tokenizer may live on another machine)."""
    data = dict(data)
    if isinstance(data.get("arms"), list):
        data["arms"] = [_arm_text(label, i, item) for i, item in enumerate(data["arms"])]
    try:
        spec = ExperimentSpec(**data)
    except ValidationError as exc:
        raise InputError(f"{label}: {_describe(exc)}") from None
    # The plan settings are checked now, not when the first cell is due.
    for rate in spec.rate_list if check_plans else []:
        spec.plan_spec(rate, label)
    spec.run_options(label)
    return spec


def _arm_text(label: str, i: int, item: Any) -> Any:
    try:
        text = schedule_text(item)
        if isinstance(text, str):  # checked here, so the error names the arm: `exp.yaml: arms[1]: ...`
            parse_schedule(text)
    except ValueError as exc:
        raise InputError(f"{label}: arms[{i}]: {exc}") from None
    return text


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if isinstance(child, str) and part == "target":  # the shorthand, spelt out so a field can be set
            child = {"kind": "embedded"} if child == "embedded" else {"url": child}
        node[part] = child = child if isinstance(child, dict) else {}
        node = child
    node[last] = value


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    path = _path(error["loc"])
    if error["type"] == "missing":
        return f"{path}: missing (required)"
    if error["type"] == "extra_forbidden":
        return f"{path}: unknown field (see `joulebench experiment run --help`)"
    message = error["msg"].removeprefix("Value error, ")
    shown = error.get("input")
    text = f"{path}: {message}" if path else message
    return text if isinstance(shown, dict | list) or shown is None else f"{text} (got {shown!r})"


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not str(part).startswith(("function-", "literal[")):
            text += f".{part}" if text else str(part)
    return text


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def field_docs() -> list[tuple[str, str, str]]:
    """(field, default, description) of every setting, nested ones dotted: the --help and docs table."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            models = [t for t in (info.annotation, *get_args(info.annotation)) if _is_model(t)]
            shown = (info.json_schema_extra or {}) if isinstance(info.json_schema_extra, dict) else {}
            if "shown_default" in shown:
                default = str(shown["shown_default"])
            elif info.is_required():
                default = "required"
            elif models:  # a section: its own fields' defaults are in the rows under it
                default = "(below)" if info.get_default(call_default_factory=True) else "null (below)"
            else:  # as YAML spells it: null, true, [], ...
                value = info.get_default(call_default_factory=True)
                default = yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()
            rows.append((prefix + name, default, info.description or ""))
            for nested in models:
                walk(nested, f"{prefix}{name}.")

    walk(ExperimentSpec, "")
    return rows
