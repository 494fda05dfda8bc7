"""`joulebench.run`'s keywords as the settings `joulebench run`'s flags make: one validation, one wording.

Plan settings are a plan YAML's keys (traffic.spec.PlanSpec's fields: `schedules`, `n`, `rate`,
`max_tokens`, ...); every other keyword is a `joulebench run` flag with `_` for `-` (`idle`, `strict`,
`sidecar`, `timeout`, ...). Each value goes where that flag's text would go, so a bad one gets the flag's
own one-line InputError, from the settings classes the command uses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from harness.cli._typer_flags import FlagValues, OptionSpec, model_flags
from harness.cli.plan_flags import PlanOptions
from harness.cli.run_command import plan_source
from harness.runner import RunOptions
from harness.session.config import MeasureConfig, TargetConfig
from harness.session.measured_run import PlanSource
from traffic.plan import Plan
from traffic.spec import PlanSpec

PlanInput = str | os.PathLike[str] | PlanSpec | Plan | Mapping[str, Any] | None

RUN_FLAGS: dict[str, OptionSpec] = {
    flag.name: flag for model in (TargetConfig, RunOptions, MeasureConfig) for flag in model_flags(model)
}
PLAN_KEYS = frozenset(PlanSpec.model_fields)


@dataclass(frozen=True)
class RunSettings:
    target: TargetConfig
    plan: PlanSource
    options: RunOptions
    measure: MeasureConfig
    argv: list[str]  # the call, as the manifest records it (its `command_line`)


def run_settings(target: str | None, plan: PlanInput, keywords: Mapping[str, Any]) -> RunSettings:
    """The settings of one run; InputError (one line, naming the flag or plan key) on a bad value."""
    unknown = sorted(set(keywords) - RUN_FLAGS.keys() - PLAN_KEYS)
    if unknown:
        raise TypeError(
            f"joulebench.run(): unexpected keyword {unknown[0]!r}; plan settings: "
            f"{', '.join(sorted(PLAN_KEYS))}; run settings (`joulebench run` flags): {', '.join(RUN_FLAGS)}"
        )
    # None is "not given", as an absent flag: the flag's default stands.
    given = {name: value for name, value in keywords.items() if name in RUN_FLAGS and value is not None}
    # Defaults as typer hands them to the command: text, which the flag's own conversion parses.
    flags = FlagValues(
        {name: _as_flag_value(flag, given.get(name, flag.default)) for name, flag in RUN_FLAGS.items()}
    )
    url = None if target is None else str(target)
    plan_values = {name: value for name, value in keywords.items() if name in PLAN_KEYS}
    return RunSettings(
        target=flags.build(TargetConfig, url=url),
        plan=_plan_source(plan, plan_values, embedded=url is None),
        options=flags.build(RunOptions),
        measure=flags.build(MeasureConfig),
        argv=_argv(url, plan, keywords),
    )


def check_name(name: str | None) -> None:
    """A run folder's name is one folder under `out`: not empty, no separator, not "." or ".."."""
    if name is None:
        return
    if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name:
        raise InputError(f"name: expected one folder name (no '/', not empty, '.' or '..'), got {name!r}")


def _plan_source(plan: PlanInput, values: dict[str, Any], embedded: bool) -> PlanSource:
    """A plan file (Parquet), a plan YAML (`plan build --config`; keywords override it), a PlanSpec or a
    mapping of its fields, a built Plan, or None: the plan keywords (on the embedded default: laid over
    the built-in plan, as `joulebench run`'s flags are), or the built-in plan."""
    if isinstance(plan, Plan | PlanSpec):
        if values:
            raise InputError(
                f"plan: give a {type(plan).__name__} or plan settings ({', '.join(values)}), not both"
            )
        if isinstance(plan, Plan):
            return PlanSource(built=(plan, "given"))
        return PlanSource(spec=lambda: plan)
    if isinstance(plan, Mapping):
        return PlanSource(spec=PlanOptions(values={**plan, **values}).to_spec)
    if plan is not None and Path(plan).suffix.lower() in (".yaml", ".yml"):
        return PlanSource(spec=PlanOptions(values=values, config=Path(plan)).to_spec)
    return plan_source(None if plan is None else Path(plan), PlanOptions(values=values), embedded)


def _as_flag_value(flag: OptionSpec, value: Any) -> Any:
    """A switch takes True or False; any other flag takes its text (a number is written as one)."""
    if value is None:
        return None
    if flag.kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"{flag.long}: expected True or False, got {value!r}")
        return value
    return str(value)


def _argv(url: str | None, plan: PlanInput, keywords: Mapping[str, Any]) -> list[str]:
    shown = [] if url is None else [f"target={url}"]
    if isinstance(plan, str | os.PathLike):
        shown.append(f"plan={os.fspath(plan)}")
    elif plan is not None:
        shown.append(f"plan=<{type(plan).__name__}>")
    return ["joulebench.run", *shown, *(f"{name}={value!r}" for name, value in keywords.items())]
