"""The plan flags shared by `joulebench plan build` and `joulebench run`, declared once.

Use it as a decorator under the typer command decorator; the command receives the values as
`plan: PlanOptions` and calls `plan.to_spec()` for a validated `traffic.spec.PlanSpec`:

    @app.command()
    @plan_options
    def run(target: str, plan: PlanOptions) -> None:
        if plan.given():                  # any plan flag (or --config) on the command line
            spec = plan.to_spec()         # InputError (one line) on bad values
            built = build_plan(spec)

Numbers are taken as text and converted by `PlanSpec`, so a bad value gets the same one-line error
naming the flag as every other plan problem (click's own type errors print a usage block).
"""

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from traffic.errors import InputError
from traffic.prompts.synthetic import DEFAULTS as SYNTHETIC_DEFAULTS
from traffic.schedules import help_text as schedule_help
from traffic.spec import DEFAULT_SCHEDULE, PlanSpec

_PANEL = "Plan"


def _option(kind: Any, *decls: str, help: str, metavar: str | None = None) -> Any:
    return Annotated[kind, typer.Option(*decls, help=help, metavar=metavar, rich_help_panel=_PANEL)]


_TEXT = str | None  # numbers too: PlanSpec converts them (see the module docstring)
_SWITCH = bool | None  # None: not given, so a YAML value stands

# Python parameter name -> (typer annotation, PlanSpec field; "" for --config itself).
_OPTIONS: dict[str, tuple[Any, str]] = {
    "config": (
        _option(
            Path | None,
            "--config",
            help="YAML file with plan settings: keys are the flag names with "
            "'_' for '-' (max_tokens, ...), except schedules (a list) and fields (a mapping); flags given "
            "here override it.",
        ),
        "",
    ),
    "prompts": (
        _option(
            _TEXT,
            "--prompts",
            metavar="SOURCE",
            help="Prompt source: synthetic[:options], a "
            ".jsonl/.json/.csv/.parquet file, or hf:NAME (see Prompt sources below). (default: synthetic)",
        ),
        "prompts",
    ),
    "field": (
        _option(
            list[str] | None,
            "--field",
            metavar="ROLE=COLUMN",
            help="Map a column: prompt=COL (text), "
            "messages=COL (conversation) or id=COL; a bare COLUMN means prompt=COLUMN. Repeatable. "
            "(default: prompt or text, else messages or conversations)",
        ),
        "fields",
    ),
    "conversation": (
        _option(
            _TEXT,
            "--conversation",
            metavar="first|full",
            help="Conversation sources: 'first' sends the "
            "first user turn as the prompt; 'full' sends the turns up to the last user turn as chat "
            "messages. (default: first)",
        ),
        "conversation",
    ),
    "tokenizer": (
        _option(
            _TEXT,
            "--tokenizer",
            metavar="PATH",
            help="tokenizer.json, or a folder with it (or "
            "vocab.json + merges.txt): fills prompt_tokens, enables token filters and token-exact "
            "synthetic lengths.",
        ),
        "tokenizer",
    ),
    "sample": (
        _option(
            _TEXT,
            "--sample",
            metavar="K",
            help="Keep a random subset of K prompts (after filters) as the pool requests draw from.",
        ),
        "sample",
    ),
    "replace": (
        _option(
            _SWITCH,
            "--replace/--no-replace",
            help="Draw prompts with replacement (i.i.d.) instead of "
            "a random order without repeats. (default: no-replace)",
        ),
        "replace",
    ),
    "min_prompt_chars": (
        _option(
            _TEXT, "--min-prompt-chars", metavar="INT", help="Drop prompts shorter than this (characters)."
        ),
        "min_prompt_chars",
    ),
    "max_prompt_chars": (
        _option(
            _TEXT, "--max-prompt-chars", metavar="INT", help="Drop prompts longer than this (characters)."
        ),
        "max_prompt_chars",
    ),
    "min_prompt_tokens": (
        _option(
            _TEXT,
            "--min-prompt-tokens",
            metavar="INT",
            help="Drop prompts with fewer tokens (needs --tokenizer).",
        ),
        "min_prompt_tokens",
    ),
    "max_prompt_tokens": (
        _option(
            _TEXT,
            "--max-prompt-tokens",
            metavar="INT",
            help="Drop prompts with more tokens (needs --tokenizer).",
        ),
        "max_prompt_tokens",
    ),
    "polite": (
        _option(
            _SWITCH,
            "--polite/--no-polite",
            help="The paper's polite variant: end with 'Thank you!' "
            "(prompts get it appended; full conversations get a final user turn). (default: no-polite)",
        ),
        "polite",
    ),
    "max_tokens": (
        _option(
            _TEXT,
            "--max-tokens",
            metavar="INT",
            help="Output tokens per request (caps a trace's output lengths).",
        ),
        "max_tokens",
    ),
    "ignore_eos": (
        _option(
            _SWITCH,
            "--ignore-eos/--no-ignore-eos",
            help="Ask the server to ignore EOS, so every request "
            "generates exactly max_tokens. (default: no-ignore-eos)",
        ),
        "ignore_eos",
    ),
    "temperature": (
        _option(
            _TEXT, "--temperature", metavar="FLOAT", help="Sampling temperature (default: the server's)."
        ),
        "temperature",
    ),
    "schedule": (
        _option(
            list[str] | None,
            "--schedule",
            metavar="KIND:KEY=VALUE,...",
            help="Arrival schedule; repeat "
            "for several arms over the same prompts (see Schedules below). "
            f"(default: {DEFAULT_SCHEDULE})",
        ),
        "schedules",
    ),
    "rate": (
        _option(
            _TEXT,
            "--rate",
            metavar="REQ/S",
            help="Mean rate of every open-loop arm (load matching): "
            "interval keys are scaled proportionally, poisson/gamma take it as their rate, trace arms get "
            "a matching time_scale.",
        ),
        "rate",
    ),
    "n": (
        _option(_TEXT, "--n", "-n", metavar="INT", help="Requests per arm (trace arms: at most this many)."),
        "n",
    ),
    "duration": (
        _option(
            _TEXT,
            "--duration",
            metavar="SECONDS",
            help="Keep requests with offset < this in every open-loop arm.",
        ),
        "duration",
    ),
    "seed": (
        _option(
            _TEXT,
            "--seed",
            metavar="INT",
            help="Seed of every random choice (same seed, same plan). (default: 0)",
        ),
        "seed",
    ),
}

_SOURCES_HELP = f"""Prompt sources (--prompts):
  synthetic[:dist=lognormal|uniform|fixed,mean=M,cv=C,min=A,max=B]
      built-in pseudo-words (no third-party text); lengths in words, or in tokens with --tokenizer.
      Defaults: {", ".join(f"{k}={v}" for k, v in SYNTHETIC_DEFAULTS.items())}.
  FILE.jsonl | .json | .csv | .parquet
      UltraChat (prompt, or messages), AI Energy Score (its _provenance header line is kept, not sent),
      or any table with --field. The file's sha256 goes into the plan header.
  hf:NAME[,split=S,config=C]
      a Hugging Face dataset from the local cache only (offline; never downloads)."""

# The text typer shows after the options of every command that uses these flags (rich markup escaped).
EPILOG = escape(
    f"{_SOURCES_HELP}\n\n{schedule_help()}\n\n"
    "Time: offsets are seconds from the arm's start; time_scale multiplies trace times (0.5 replays "
    "twice as fast). --rate R gives every open-loop arm mean rate R by scaling its interval keys by one "
    "factor (a trace arm gets time_scale = its window's rate / R). See docs/plans.md."
)

_FLAG_OF = {
    spec_field: f"--{name.replace('_', '-')}" for name, (_, spec_field) in _OPTIONS.items() if spec_field
}


@dataclass(frozen=True)
class PlanOptions:
    """The plan flags as given on the command line (None: not given)."""

    values: dict[str, Any] = field(default_factory=dict)  # PlanSpec field -> value
    config: Path | None = None

    def given(self) -> bool:
        """Whether any plan flag or --config was given."""
        return self.config is not None or any(v is not None for v in self.values.values())

    def to_spec(self) -> PlanSpec:
        """Validate into a PlanSpec (YAML from --config first, flags over it); InputError on bad input."""
        flags = {k: v for k, v in self.values.items() if v is not None}
        if self.config is not None:
            return PlanSpec.from_yaml(self.config, overrides=flags, label=self._label)
        return PlanSpec.parse(flags, label=self._label)

    def _label(self, path: str) -> str:
        base, _, rest = path.partition("[")
        flag = _FLAG_OF.get(base, base)
        if base == "schedules" and rest:
            index = int(rest.rstrip("]"))
            schedules = self.values.get("schedules") or []
            if index < len(schedules):
                return f"{flag} {schedules[index]!r}"
        return flag


def plan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the plan flags to a typer command; it receives them as `plan: PlanOptions`."""
    signature = inspect.signature(func, eval_str=True)
    if "plan" not in signature.parameters:
        raise TypeError(f"{func.__name__} must take a `plan: PlanOptions` parameter")
    kept = [p for p in signature.parameters.values() if p.name != "plan"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
        for name, (annotation, _) in _OPTIONS.items()
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in _OPTIONS}
        values = {
            spec_field: _normalise(spec_field, given[name])
            for name, (_, spec_field) in _OPTIONS.items()
            if spec_field
        }
        return func(*args, plan=PlanOptions(values=values, config=given["config"]), **kwargs)

    # typer reads the parameters from the signature; the annotations are already evaluated here.
    wrapper.__signature__ = signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*kept, *added]}
    del wrapper.__wrapped__  # keep inspect from looking past the new signature
    return wrapper


def _normalise(spec_field: str, value: Any) -> Any:
    """Flag values in PlanSpec's shapes: empty repeatable flags are 'not given'; --field to a dict."""
    if isinstance(value, list) and not value:
        return None
    if spec_field == "fields" and value is not None:
        mapping: dict[str, str] = {}
        for item in value:
            role, sep, column = item.partition("=")
            role, column = (role.strip(), column.strip()) if sep else ("prompt", role.strip())
            if role in mapping:
                raise InputError(f"--field: role {role!r} given twice")
            mapping[role] = column
        return mapping
    return value
