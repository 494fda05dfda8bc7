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
naming the flag as every other plan problem (click's own type errors word it their own way). The
options themselves come from the `OptionSpec` table below, through harness/cli/_typer_flags.py; the
defaults their help shows and the choices of a Literal field are read from PlanSpec's fields.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.markup import escape

from foundation.errors import InputError
from harness.cli._typer_flags import TEXT, OptionSpec, add_flags, choices_metavar
from traffic.prompts.hf import INSTALL_HINT, PREFERRED_SPLITS
from traffic.prompts.source import SHORTCUTS
from traffic.prompts.synthetic import DEFAULTS as SYNTHETIC_DEFAULTS
from traffic.schedules import help_text as schedule_help
from traffic.shaping import param_docs
from traffic.spec import MAX_REQUESTS_PER_ARM, PlanSpec

_PANEL = "Plan"
_SWITCH = bool | None  # None: not given, so a YAML value stands
# Where the PlanSpec field's name differs from the flag's
_SPEC_FIELD = {"field": "fields", "schedule": "schedules", "policy": "policies"}


def _flag(usage: str, help: str, kind: Any = TEXT) -> OptionSpec:
    """The option of PlanSpec's field of that name; its choices (without a metavar in `usage`) and the
    default its help shows are read from the field, so they cannot drift from what PlanSpec does."""
    option = OptionSpec.of(usage, help, _PANEL, kind=kind)
    spec_field = PlanSpec.model_fields[_SPEC_FIELD.get(option.name, option.name)]
    shown = _shown_default(option, spec_field.get_default(call_default_factory=True))
    return replace(
        option,
        metavar=option.metavar or choices_metavar(spec_field.annotation),
        help=f"{help} (default: {shown})" if shown else help,
    )


def _shown_default(option: OptionSpec, default: Any) -> str | None:
    """How the help shows PlanSpec's default: a switch by the flag that sets it (no-polite), a list by
    its items; None and empty defaults mean "not applied", which the help text itself describes."""
    if isinstance(default, bool):
        switch = option.long.removeprefix("--")
        return switch if default else f"no-{switch}"
    if isinstance(default, list):
        return ", ".join(default) or None
    return None if default in (None, {}) else str(default)


# Numbers are text too: PlanSpec converts them (see the module docstring).
_FLAGS = [
    OptionSpec.of(
        "--config",
        "YAML file with plan settings: keys are the flag names with '_' for '-' (max_tokens, ...), except "
        "schedules (a list) and fields (a mapping); flags given here override it.",
        _PANEL,
        kind=Path | None,
    ),
    _flag(
        "--prompts SOURCE",
        "Prompt source: synthetic[:options], a .jsonl/.json/.csv/.parquet file, hf:NAME, or ultrachat (see "
        "Prompt sources below).",
    ),
    _flag(
        "--offline/--online",
        "Hugging Face sources: read the local datasets cache only, never download (fails at once, saying "
        "how to cache it, when the dataset is not there).",
        _SWITCH,
    ),
    _flag(
        "--field ROLE=COLUMN",
        "Map a column: prompt=COL (text), messages=COL (conversation) or id=COL; a bare COLUMN means "
        "prompt=COLUMN. Repeatable. (default: prompt or text, else messages or conversations)",
        list[str] | None,
    ),
    _flag(
        "--conversation",
        "Conversation sources: 'first' sends the first user turn as the prompt; 'full' sends the turns up "
        "to the last user turn as chat messages.",
    ),
    _flag(
        "--tokenizer PATH",
        "tokenizer.json, or a folder with it (or vocab.json + merges.txt): fills prompt_tokens, enables "
        "token filters and token-exact synthetic lengths.",
    ),
    _flag("--sample K", "Keep a random subset of K prompts (after filters) as the pool requests draw from."),
    _flag(
        "--replace/--no-replace",
        "Draw prompts with replacement (i.i.d.) instead of a random order without repeats.",
        _SWITCH,
    ),
    _flag("--min-prompt-chars INT", "Drop prompts shorter than this (characters)."),
    _flag("--max-prompt-chars INT", "Drop prompts longer than this (characters)."),
    _flag("--min-prompt-tokens INT", "Drop prompts with fewer tokens (needs --tokenizer)."),
    _flag("--max-prompt-tokens INT", "Drop prompts with more tokens (needs --tokenizer)."),
    _flag(
        "--polite/--no-polite",
        "The paper's polite variant: end with 'Thank you!' (prompts get it appended; full conversations "
        "get a final user turn).",
        _SWITCH,
    ),
    _flag("--max-tokens INT", "Output tokens per request (caps a trace's output lengths)."),
    _flag(
        "--ignore-eos/--no-ignore-eos",
        "Ask the server to ignore EOS, so every request generates exactly max_tokens.",
        _SWITCH,
    ),
    _flag("--temperature FLOAT", "Sampling temperature (default: the server's)."),
    _flag(
        "--schedule KIND:KEY=VALUE,...",
        "Arrival schedule; repeat for several arms over the same prompts (see Schedules below).",
        list[str] | None,
    ),
    _flag(
        "--policy KIND:KEY=VALUE,...",
        "Shaping policy between the arriving users and the server, e.g. window:period=1; repeat for "
        "several: every schedule x every policy is an arm (`<schedule>+<policy>`) with the same arrivals "
        "and prompts. See Policies below and docs/shaping.md. (default: none, unshaped)",
        list[str] | None,
    ),
    _flag(
        "--rate REQ/S[,REQ/S...]",
        "Mean rate of every open-loop arm (load matching): interval keys are scaled proportionally, "
        "poisson/gamma take it as their rate, trace arms get a matching time_scale. Several rates "
        "(joulebench run only) make a rate sweep: an experiment with one plan per rate.",
        list[str] | None,
    ),
    _flag(
        "--n -n INT", f"Requests per arm, at most {MAX_REQUESTS_PER_ARM:,} (trace arms: at most this many)."
    ),
    _flag("--duration SECONDS", "Keep requests with offset < this in every open-loop arm."),
    _flag("--seed INT", "Seed of every random choice (same seed, same plan)."),
]

_SOURCES_HELP = f"""Prompt sources (--prompts):
  synthetic[:dist=lognormal|uniform|fixed,mean=M,cv=C,min=A,max=B]
      built-in pseudo-words (no third-party text); lengths in words, or in
      tokens with --tokenizer.
      Defaults: {", ".join(f"{k}={v}" for k, v in SYNTHETIC_DEFAULTS.items())}.
  FILE.jsonl | .json | .csv | .parquet
      UltraChat (prompt, or messages), AI Energy Score (its _provenance header
      line is kept, not sent), or any table with --field. The file's sha256
      goes into the plan header.
  hf:NAME[,split=S,config=C]
      a Hugging Face dataset ({INSTALL_HINT}), downloaded
      into the datasets cache (HF_HOME), or read from it only with --offline.
      No split: train, else the only split, else {", ".join(PREFERRED_SPLITS)}, else name one.
  ultrachat
      = {SHORTCUTS["ultrachat"]}: its prompt column
      (the first user turn); --conversation full sends its messages."""


def _policy_help() -> str:
    """Every policy kind with its parameters and their defaults, for `--help` (from the policies' models;
    what each does is in docs/shaping.md)."""
    lines = ["Policies (--policy KIND:key=value,...; [optional]; what each does: docs/shaping.md):"]
    for kind, _, params in param_docs():
        shown = [
            name if default == "required" else f"[{name}]" if default == "none" else f"[{name}={default}]"
            for name, default, _ in params
        ]
        lines.append(f"  {kind}" + (f": {', '.join(shown)}" if shown else ""))
    return "\n".join(lines)


# The text typer shows after the options of every command that uses these flags (rich markup escaped).
EPILOG = escape(
    f"{_SOURCES_HELP}\n\n{schedule_help()}\n\n{_policy_help()}\n\n"
    "Time: offsets are seconds from the arm's start; time_scale multiplies trace times (0.5 replays "
    "twice as fast). --rate R gives every open-loop arm mean rate R by scaling its interval keys by one "
    "factor (a trace arm gets time_scale = its window's rate / R). See docs/plans.md."
)

_FLAG_OF = {_SPEC_FIELD.get(f.name, f.name): f.long for f in _FLAGS if f.name != "config"}


@dataclass(frozen=True)
class PlanOptions:
    """The plan flags as given on the command line (None: not given)."""

    values: dict[str, Any] = field(default_factory=dict)  # PlanSpec field -> value
    config: Path | None = None
    rates: list[float] | None = None  # --rate with several values: a sweep (values["rate"] is then None)

    def given(self) -> bool:
        """Whether any plan flag or --config was given."""
        given = self.config is not None or self.rates is not None
        return given or any(v is not None for v in self.values.values())

    def to_spec(self) -> PlanSpec:
        """Validate into a PlanSpec (YAML from --config first, flags over it); InputError on bad input."""
        if self.rates is not None:
            shown = ",".join(f"{r:g}" for r in self.rates)
            raise InputError(
                f"--rate {shown}: a plan has one rate; several rates are a sweep "
                "(`joulebench run --rate ...` or `joulebench experiment run`)"
            )
        flags = {k: v for k, v in self.values.items() if v is not None}
        if self.config is not None:
            return PlanSpec.from_yaml(self.config, overrides=flags, label=self._label)
        return PlanSpec.parse(flags, label=self._label)

    def _label(self, path: str) -> str:
        base, _, rest = path.partition("[")
        flag = _FLAG_OF.get(base, base)
        if base in ("schedules", "policies") and rest:
            index = int(rest.rstrip("]"))
            given = self.values.get(base) or []
            if index < len(given):
                return f"{flag} {given[index]!r}"
        return flag


def plan_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the plan flags to a typer command; it receives them as `plan: PlanOptions`."""
    return add_flags(func, _FLAGS, "plan", _plan_options)


def _plan_options(given: dict[str, Any]) -> PlanOptions:
    config = given.pop("config")
    single, sweep = _rates(given.pop("rate"))
    values = {_SPEC_FIELD.get(name, name): _normalise(name, value) for name, value in given.items()}
    values["rate"] = single
    return PlanOptions(values=values, config=config, rates=sweep)


def _rates(given: list[str] | None) -> tuple[str | None, list[float] | None]:
    """--rate as given: one value (text: PlanSpec converts it), or one comma-separated list (a sweep,
    converted here). A repeated --rate is refused: the last one would silently win otherwise."""
    if not given:
        return None, None
    if len(given) > 1:
        raise InputError(
            f"--rate: given {len(given)} times ({', '.join(given)}); give several rates as one list: "
            f"--rate {','.join(given)}"
        )
    if "," not in given[0]:
        return given[0].strip(), None
    return None, parse_rate_list(given[0], "--rate")


def parse_rate_list(text: str, flag: str) -> list[float]:
    """'2,4,8' -> [2.0, 4.0, 8.0]: positive, distinct requests/s; one line naming the flag otherwise."""
    rates: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            rate = float(part)
        except ValueError:
            raise InputError(f"{flag} {text!r}: {part!r} is not a number of requests/s") from None
        if not 0 < rate < float("inf"):
            raise InputError(f"{flag} {text!r}: rates must be positive requests/s")
        rates.append(rate)
    if len(set(rates)) != len(rates):
        raise InputError(f"{flag} {text!r}: a rate is given twice")
    return rates


def _normalise(name: str, value: Any) -> Any:
    """Flag values in PlanSpec's shapes: empty repeatable flags are 'not given'; --field to a dict."""
    if isinstance(value, list) and not value:
        return None
    if name == "field" and value is not None:
        mapping: dict[str, str] = {}
        for item in value:
            role, sep, column = item.partition("=")
            role, column = (role.strip(), column.strip()) if sep else ("prompt", role.strip())
            if role in mapping:
                raise InputError(f"--field: role {role!r} given twice")
            mapping[role] = column
        return mapping
    return value
