"""`PlanSpec`: everything needed to build an arrival plan, validated in this one place.

Flags (`joulebench plan build`, `joulebench run`) and YAML files both become a `PlanSpec` through
`PlanSpec.parse`, which turns every problem into an `InputError` naming the flag or the YAML key.
What can only be checked by reading files (malformed rows, an empty dataset) is checked when the
plan is built, still before anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from foundation.errors import InputError
from traffic.prompts import SourceSpec, parse_source
from traffic.prompts.content import FIELD_ROLES, ConversationMode
from traffic.schedules import KINDS, Schedule, arm_names, mean_gap, parse_schedule, resolve
from traffic.shaping import PolicySpec, parse_policy

DEFAULT_SCHEDULE = "fixed:interval=0.5"
# Joins a shaped arm's schedule name and policy name: arm names never contain it (traffic.schedules).
POLICY_SEPARATOR = "+"
# The most requests one arm may hold: ten million rows already take minutes to build and gigabytes
# to join; far more would only end in an allocation failure halfway through building the plan.
MAX_REQUESTS_PER_ARM = 10_000_000


class _Problem(ValueError):
    """A validation problem that knows which field (or list item) it belongs to."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class PlanSpec(BaseModel):
    """A plan's configuration. Field names are the YAML keys; flags are the same with dashes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    # What is sent
    prompts: str = Field(
        "synthetic", description="synthetic[:k=v,...], hf:NAME[,split=S,config=C], ultrachat, or a file"
    )
    offline: bool = Field(
        False, description="hf sources: read the local Hugging Face datasets cache only, never download"
    )
    fields: dict[str, str] = Field(default_factory=dict, description="role -> column: prompt, messages, id")
    conversation: ConversationMode = "first"
    tokenizer: str | None = None
    sample: int | None = Field(None, gt=0)
    replace: bool = False
    min_prompt_chars: int | None = Field(None, ge=0)
    max_prompt_chars: int | None = Field(None, gt=0)
    min_prompt_tokens: int | None = Field(None, ge=0)
    max_prompt_tokens: int | None = Field(None, gt=0)
    polite: bool = False
    max_tokens: int | None = Field(None, gt=0)
    ignore_eos: bool = False
    temperature: float | None = Field(None, ge=0)
    # When
    schedules: list[str] = Field(default_factory=lambda: [DEFAULT_SCHEDULE])
    rate: float | None = Field(None, gt=0)
    n: int | None = Field(None, gt=0)
    duration: float | None = Field(None, gt=0)
    seed: int = Field(0, ge=0)
    # Who releases: every schedule x every policy is an arm; none, the arms are the schedules, unshaped
    policies: list[str] = Field(default_factory=list)

    _schedules: list[Schedule] = PrivateAttr(default_factory=list)
    _policies: list[PolicySpec] = PrivateAttr(default_factory=list)
    _schedule_names: list[str] = PrivateAttr(default_factory=list)
    _arm_names: list[str] = PrivateAttr(default_factory=list)
    _source: SourceSpec | None = PrivateAttr(default=None)

    @field_validator("n")
    @classmethod
    def _check_n(cls, value: int | None) -> int | None:
        if value is not None and value > MAX_REQUESTS_PER_ARM:
            raise _Problem("n", f"at most {MAX_REQUESTS_PER_ARM:,} requests per arm, got {value:,}")
        return value

    @field_validator("prompts")
    @classmethod
    def _check_prompts(cls, value: str) -> str:
        try:
            parse_source(value)
        except ValueError as exc:
            raise _Problem("prompts", str(exc)) from None
        return value.strip()

    @field_validator("fields")
    @classmethod
    def _check_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for role, column in value.items():
            if role not in FIELD_ROLES:
                raise _Problem(
                    "fields", f"unknown role {role!r} in {role}={column} (use {', '.join(FIELD_ROLES)})"
                )
            if not column:
                raise _Problem("fields", f"{role}= names no column")
        return value

    @field_validator("tokenizer")
    @classmethod
    def _check_tokenizer(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).exists():
            # A name with a byte that is not UTF-8 (a surrogate escape) must still print.
            shown = value.encode("utf-8", "backslashreplace").decode()
            raise _Problem("tokenizer", f"{shown}: tokenizer not found")
        return value

    @field_validator("schedules")
    @classmethod
    def _check_schedules(cls, value: list[str]) -> list[str]:
        if not value:
            raise _Problem("schedules", "give at least one schedule")
        for i, text in enumerate(value):
            try:
                schedule = parse_schedule(text)
            except ValueError as exc:
                raise _Problem(f"schedules[{i}]", str(exc)) from None
            if schedule.kind == "trace" and not Path(schedule.params["path"]).is_file():
                raise _Problem(f"schedules[{i}]", f"trace: {schedule.params['path']}: trace file not found")
        return value

    @field_validator("policies", mode="before")
    @classmethod
    def _one_policy(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # YAML's `policies: window:period=1`

    @field_validator("policies")
    @classmethod
    def _check_policies(cls, value: list[str]) -> list[str]:
        names: set[str] = set()
        for i, text in enumerate(value):
            try:
                name = parse_policy(text).name
            except ValueError as exc:
                raise _Problem(f"policies[{i}]", str(exc)) from None
            if name in names:  # two arms of one name
                raise _Problem(f"policies[{i}]", f"policy {name!r} is given twice")
            names.add(name)
        return value

    @model_validator(mode="after")
    def _check_combination(self) -> PlanSpec:
        self._source = dataclasses.replace(parse_source(self.prompts), offline=self.offline)
        self._schedules = [parse_schedule(text) for text in self.schedules]
        self._policies = [parse_policy(text) for text in self.policies]
        try:
            self._schedule_names = arm_names(self._schedules)
        except ValueError as exc:
            raise _Problem("schedules", str(exc)) from None
        named = zip(self._schedule_names, self._schedules, strict=True)
        closed = [name for name, schedule in named if schedule.kind == "concurrency"]
        if self._policies and closed:
            raise _Problem(
                "policies",
                f"arm {closed[0]!r} is closed loop: its users wait for their own responses, so there are "
                "no offered arrivals to shape (policies apply to open-loop schedules)",
            )
        self._arm_names = shaped_arm_names(self._schedule_names, [p.name for p in self._policies])
        for low, high in (
            ("min_prompt_chars", "max_prompt_chars"),
            ("min_prompt_tokens", "max_prompt_tokens"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise _Problem(low, f"{lo} is above {high} ({hi})")
        if (self.min_prompt_tokens is not None or self.max_prompt_tokens is not None) and not self.tokenizer:
            raise _Problem(
                "max_prompt_tokens" if self.min_prompt_tokens is None else "min_prompt_tokens",
                "token length filters need a tokenizer",
            )
        if self.offline and self._source.kind != "hf":
            raise _Problem(
                "offline", f"applies to Hugging Face sources (hf:NAME, ultrachat), not {self.prompts!r}"
            )
        if self._source.kind == "synthetic":
            if self.fields:
                raise _Problem("fields", "field mapping applies to file and hf sources, not synthetic")
            if self.conversation == "full":
                raise _Problem(
                    "conversation", "synthetic prompts are single turns; 'full' needs a conversation source"
                )
        for i, schedule in enumerate(self._schedules):
            self._check_length(i, schedule)
        return self

    def _check_length(self, i: int, schedule: Schedule) -> None:
        # Without n or duration, the other arms take as many requests as the first trace arm replays.
        where = f"schedules[{i}]"
        arm = f"arm {self._schedule_names[i]!r} ({schedule.spec})"
        has_trace = any(s.kind == "trace" for s in self._schedules)
        if schedule.kind == "concurrency":
            if self.n is None and not has_trace:
                raise _Problem("n", f"{arm}: a closed-loop arm needs n (requests)")
        elif schedule.kind != "trace" and self.n is None and self.duration is None and not has_trace:
            raise _Problem("n", f"{arm}: give n (requests per arm) or duration (seconds)")
        if schedule.kind in ("poisson", "gamma") and "rate" not in schedule.params and self.rate is None:
            raise _Problem(where, f"{schedule.kind}: needs rate (in the schedule, or the global rate)")
        if schedule.kind not in ("trace", "concurrency") and self.n is None and self.duration is not None:
            expected = self.duration / mean_gap(schedule.kind, resolve(schedule, self.rate))
            if expected > MAX_REQUESTS_PER_ARM:
                raise _Problem(
                    "duration",
                    f"{arm}: {self.duration:g} s is about {expected:,.0f} requests; "
                    f"at most {MAX_REQUESTS_PER_ARM:,} per arm",
                )

    @property
    def parsed_schedules(self) -> list[Schedule]:
        return list(self._schedules)

    @property
    def parsed_policies(self) -> list[PolicySpec]:
        return list(self._policies)

    @property
    def schedule_names(self) -> list[str]:
        """The schedules' own names (the arm names of an unshaped plan)."""
        return list(self._schedule_names)

    @property
    def arm_names(self) -> list[str]:
        """Every arm's name: schedule names, or with policies `<schedule>+<policy>`, schedule by schedule."""
        return list(self._arm_names)

    @property
    def source(self) -> SourceSpec:
        assert self._source is not None
        return self._source

    # --- construction with one-line errors -------------------------------------------------------

    @classmethod
    def parse(cls, data: Mapping[str, Any], label: Callable[[str], str] | None = None) -> PlanSpec:
        """Validate `data`; any problem raises InputError('<label of the field>: <problem>').

        `label` maps a field path such as "n" or "schedules[1]" to how the user wrote it (a flag, a
        YAML key); by default the field path itself.
        """
        label = label or (lambda path: path)
        try:
            return cls(**dict(data))
        except ValidationError as exc:
            raise InputError(_describe(exc, label)) from None

    @classmethod
    def from_yaml(
        cls,
        path: str | Path,
        overrides: Mapping[str, Any] | None = None,
        label: Callable[[str], str] | None = None,
    ) -> PlanSpec:
        """Load a YAML plan spec; `overrides` (e.g. flags given on the command line) replace its keys."""
        data = read_yaml(path)
        merged = {**data, **(overrides or {})}
        overridden = set(overrides or {})

        def where(field: str) -> str:
            if field.split("[")[0] in overridden and label is not None:
                return label(field)
            return f"{path}: {field}"

        return cls.parse(merged, where)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML plan spec as a dict; schedules may be strings or mappings {kind: ..., key: value}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: plan spec file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of plan settings at the top level")
    if isinstance(data.get("schedules"), str):
        data["schedules"] = [data["schedules"]]
    if isinstance(data.get("schedules"), list):
        data["schedules"] = [_schedule_text(path, i, item) for i, item in enumerate(data["schedules"])]
    return data


def shaped_arm_names(schedule_names: list[str], policy_names: list[str]) -> list[str]:
    """Arm names of schedules x policies, schedule by schedule: `poisson+window-1s`; the schedule names
    themselves when there is no policy (an unshaped plan)."""
    if not policy_names:
        return list(schedule_names)
    return [f"{s}{POLICY_SEPARATOR}{p}" for s in schedule_names for p in policy_names]


def policy_text(policy: PolicySpec) -> str:
    """A policy's canonical spec: its kind and every parameter, defaults spelt out, in field order, so
    it reads back (`parse_policy`) as the same policy whatever the defaults become."""
    values = policy.model_dump(by_alias=True, exclude_none=True)
    params = values.pop("params", None)  # a custom policy's own keys, after its class
    pairs = [f"{key}={_yaml_scalar(value)}" for key, value in values.items()]
    pairs += [f"{key}={value}" for key, value in (params or {}).items()]
    return f"{policy.kind}:{','.join(pairs)}" if pairs else policy.kind


def schedule_text(item: Any) -> Any:
    """A schedule as text: a mapping {kind: ..., key: value} becomes 'kind:key=value,...'; text stays."""
    if not isinstance(item, dict):
        return item
    item = dict(item)
    kind = item.pop("kind", None)
    if kind not in KINDS:
        raise ValueError(f"needs kind: one of {', '.join(KINDS)}")
    values = ",".join(f"{key}={_yaml_scalar(value)}" for key, value in item.items())
    return f"{kind}:{values}" if values else kind


def _schedule_text(path: Path, i: int, item: Any) -> Any:
    try:
        return schedule_text(item)
    except ValueError as exc:
        raise InputError(f"{path}: schedules[{i}]: {exc}") from None


def _yaml_scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _describe(exc: ValidationError, label: Callable[[str], str]) -> str:
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _Problem):
        return f"{label(cause.field)}: {cause}"
    path = _path(error["loc"])
    if error["type"] == "extra_forbidden":
        known = ", ".join(PlanSpec.model_fields)
        return f"{label(path)}: unknown setting (known: {known})"
    message = error["msg"].removeprefix("Value error, ")
    return f"{label(path)}: {message} (got {error.get('input')!r})"


def _path(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
