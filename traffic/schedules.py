"""Arrival schedules as the user writes them: `KIND:key=value,...`, validated against each kind's keys.

This module only parses and checks; the offsets come from `traffic.arrivals` (processes) and
`traffic.traces` (replay). `resolve` applies a target mean rate, which is how arms are load-matched:
the interval parameters are scaled by one common factor, so the shape of the process is kept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TRACE_FORMATS = ("auto", "azure", "mooncake", "csv")
TIME_UNITS = ("auto", "s", "ms", "us", "ns", "datetime")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Key:
    name: str
    type: type  # float, int, str or bool
    help: str
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class Kind:
    name: str
    summary: str
    keys: tuple[Key, ...]
    check: Callable[[dict[str, Any]], None] = lambda params: None
    open_loop: bool = True

    def key(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)


@dataclass(frozen=True)
class Schedule:
    """One parsed `--schedule` value: its kind, the typed keys as written, and the original text."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    spec: str = ""

    @property
    def name(self) -> str | None:
        return self.params.get("name")

    @property
    def open_loop(self) -> bool:
        return KINDS[self.kind].open_loop


def _positive(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in params and not params[name] > 0:
            raise ValueError(f"{name} must be > 0 (got {params[name]:g})")


def _non_negative(params: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in params and params[name] < 0:
            raise ValueError(f"{name} must be >= 0 (got {params[name]:g})")


def _check_fixed(p: dict[str, Any]) -> None:
    _positive(p, "interval", "rate")
    if "interval" not in p and "rate" not in p:
        raise ValueError("needs interval (seconds between requests) or rate")


def _check_uniform(p: dict[str, Any]) -> None:
    _non_negative(p, "low")
    _positive(p, "high", "rate")
    if p["low"] >= p["high"]:
        raise ValueError(f"low ({p['low']:g}) must be < high ({p['high']:g}); use fixed for equal gaps")


def _check_bursty(p: dict[str, Any]) -> None:
    _non_negative(p, "intra")
    _positive(p, "gap", "rate")
    has_size = "size" in p
    has_range = "size_min" in p or "size_max" in p
    if has_size == has_range:
        raise ValueError("give either size (fixed burst size) or size_min and size_max (random sizes)")
    if has_range:
        if "size_min" not in p or "size_max" not in p:
            raise ValueError("random burst sizes need both size_min and size_max")
        if not 1 <= p["size_min"] <= p["size_max"]:
            raise ValueError(f"need 1 <= size_min <= size_max (got {p['size_min']}, {p['size_max']})")
    elif p["size"] < 1:
        raise ValueError(f"size must be >= 1 (got {p['size']})")


def _check_rate(p: dict[str, Any]) -> None:
    _positive(p, "rate")


def _check_gamma(p: dict[str, Any]) -> None:
    _positive(p, "rate", "cv")


def _check_concurrency(p: dict[str, Any]) -> None:
    if p["n"] < 1:
        raise ValueError(f"n (concurrent users) must be >= 1 (got {p['n']})")


def _check_trace(p: dict[str, Any]) -> None:
    _positive(p, "time_scale", "rate")
    _non_negative(p, "start")
    if "end" in p and p["end"] <= p.get("start", 0.0):
        raise ValueError(f"end ({p['end']:g}) must be > start ({p.get('start', 0.0):g})")
    if p["format"] not in TRACE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(TRACE_FORMATS)} (got {p['format']!r})")
    if p["unit"] not in TIME_UNITS:
        raise ValueError(f"unit must be one of {', '.join(TIME_UNITS)} (got {p['unit']!r})")
    if "time_scale" in p and "rate" in p:
        raise ValueError("give time_scale or rate, not both")


_NAME = Key("name", str, "arm name (default: the kind, with -2, -3... for repeats)")
_RATE = Key("rate", float, "target mean rate in requests/s; scales the interval keys proportionally")

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "fixed",
            "one request every `interval` seconds (the paper's 50/300/500 ms spacing)",
            (Key("interval", float, "seconds between consecutive requests (> 0)"), _RATE, _NAME),
            _check_fixed,
        ),
        Kind(
            "uniform",
            "i.i.d. gaps ~ U[low, high] seconds, accumulated into offsets",
            (
                Key("low", float, "smallest gap in seconds (>= 0)", required=True),
                Key("high", float, "largest gap in seconds (> low)", required=True),
                _RATE,
                _NAME,
            ),
            _check_uniform,
        ),
        Kind(
            "bursty",
            "ON/OFF: bursts of `size` requests `intra` s apart; `gap` s of silence from the last "
            "request of a burst to the first of the next (end-to-start)",
            (
                Key("size", int, "requests per burst (fixed)"),
                Key("size_min", int, "random burst size: smallest (uniform integer, inclusive)"),
                Key("size_max", int, "random burst size: largest (inclusive)"),
                Key("intra", float, "seconds between requests inside a burst (>= 0)", required=True),
                Key(
                    "gap",
                    float,
                    "seconds from a burst's last request to the next burst's first (> 0)",
                    required=True,
                ),
                _RATE,
                _NAME,
            ),
            _check_bursty,
        ),
        Kind(
            "poisson",
            "Poisson arrivals: exponential gaps with mean 1/rate",
            (Key("rate", float, "mean requests/s (> 0; or give --rate)"), _NAME),
            _check_rate,
        ),
        Kind(
            "gamma",
            "gamma-distributed gaps with mean 1/rate and coefficient of variation cv "
            "(vLLM's --burstiness is 1/cv^2; cv=1 is Poisson)",
            (
                Key("rate", float, "mean requests/s (> 0; or give --rate)"),
                Key("cv", float, "coefficient of variation of the gaps (> 0)", required=True),
                _NAME,
            ),
            _check_gamma,
        ),
        Kind(
            "concurrency",
            "closed loop: n users, each sends its next request when its previous one ends "
            "(n=1 is the 'sequential' baseline); offsets are NaN and --rate does not apply",
            (Key("n", int, "concurrent users (>= 1)", required=True), _NAME),
            _check_concurrency,
            open_loop=False,
        ),
        Kind(
            "trace",
            "replay the arrival times of a trace file; offsets = (t - start) * time_scale",
            (
                Key("path", str, "trace file", required=True),
                Key("format", str, "azure | mooncake | csv | auto (from the columns)", default="auto"),
                Key("time_scale", float, "multiply trace times by this (0.5 replays twice as fast)"),
                Key("start", float, "window start, seconds after the trace's first request", default=0.0),
                Key("end", float, "window end, seconds after the trace's first request (exclusive)"),
                Key(
                    "lengths",
                    bool,
                    "use the trace's token columns: pick prompts near the input "
                    "length, set max_tokens to the output length",
                    default=True,
                ),
                Key("time_col", str, "csv: time column (default: timestamp, time or arrival_time)"),
                Key(
                    "unit",
                    str,
                    "csv: unit of the time column: s | ms | us | ns | datetime | auto",
                    default="auto",
                ),
                Key("input_col", str, "csv: input-token column (optional)"),
                Key("output_col", str, "csv: output-token column (optional)"),
                Key("rate", float, "target mean rate in requests/s: sets time_scale = window rate / rate"),
                _NAME,
            ),
            _check_trace,
        ),
    )
}


def parse_schedule(text: str) -> Schedule:
    """Parse `KIND:key=value,...`; raises ValueError with a one-line reason."""
    raw = text.strip()
    kind_name, _, rest = raw.partition(":")
    kind_name = kind_name.strip().lower()
    kind = KINDS.get(kind_name)
    if kind is None:
        raise ValueError(f"unknown schedule kind {kind_name!r} (known: {', '.join(KINDS)})")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key_name, sep, value = item.partition("=")
        key_name = key_name.strip()
        if not sep:
            raise ValueError(f"{kind_name}: expected key=value, got {item!r}")
        key = kind.key(key_name)
        if key is None:
            known = ", ".join(k.name for k in kind.keys)
            raise ValueError(f"{kind_name}: unknown key {key_name!r} (known: {known})")
        if key_name in params:
            raise ValueError(f"{kind_name}: key {key_name!r} given twice")
        params[key_name] = _convert(kind_name, key, value.strip())
    missing = [k.name for k in kind.keys if k.required and k.name not in params]
    if missing:
        raise ValueError(f"{kind_name}: missing key(s) {', '.join(missing)}")
    for key in kind.keys:
        if key.default is not None:
            params.setdefault(key.name, key.default)
    try:
        kind.check(params)
    except ValueError as exc:
        raise ValueError(f"{kind_name}: {exc}") from None
    return Schedule(kind=kind_name, params=params, spec=raw)


def _convert(kind: str, key: Key, value: str) -> Any:
    if key.name == "name":
        if not _NAME_RE.match(value):
            raise ValueError(f"{kind}: name {value!r} may use only letters, digits, '_', '.', '-'")
        return value
    if key.type is str:
        if not value:
            raise ValueError(f"{kind}: {key.name} is empty")
        return value
    if key.type is bool:
        lowered = value.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{kind}: {key.name} must be true or false (got {value!r})")
    try:
        number = key.type(value)
    except ValueError:
        noun = "an integer" if key.type is int else "a number"
        raise ValueError(f"{kind}: {key.name} must be {noun} (got {value!r})") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"{kind}: {key.name} must be finite (got {value!r})")
    return number


def arm_names(schedules: list[Schedule]) -> list[str]:
    """Explicit `name=` values, else the kind, with -2, -3... for repeated kinds."""
    explicit = [s.name for s in schedules if s.name]
    dupes = sorted({n for n in explicit if explicit.count(n) > 1})
    if dupes:
        raise ValueError(f"arm name(s) used twice: {', '.join(dupes)}")
    taken = set(explicit)
    names: list[str] = []
    counts: dict[str, int] = {}
    for schedule in schedules:
        if schedule.name:
            names.append(schedule.name)
            continue
        counts[schedule.kind] = counts.get(schedule.kind, 0) + 1
        candidate = (
            schedule.kind if counts[schedule.kind] == 1 else f"{schedule.kind}-{counts[schedule.kind]}"
        )
        while candidate in taken:
            counts[schedule.kind] += 1
            candidate = f"{schedule.kind}-{counts[schedule.kind]}"
        taken.add(candidate)
        names.append(candidate)
    return names


def mean_gap(kind: str, params: dict[str, Any]) -> float:
    """Mean seconds between consecutive requests of an open-loop process (not trace)."""
    if kind == "fixed":
        return float(params["interval"])
    if kind == "uniform":
        return float(params["low"] + params["high"]) / 2
    if kind == "bursty":
        size = mean_burst_size(params)
        # One ON/OFF cycle holds `size` requests and lasts (size-1)*intra + gap (gap is end-to-start).
        return float((size - 1) * params["intra"] + params["gap"]) / size
    if kind in ("poisson", "gamma"):
        return 1.0 / float(params["rate"])
    raise ValueError(f"{kind}: no mean gap")


def mean_burst_size(params: dict[str, Any]) -> float:
    if "size" in params:
        return float(params["size"])
    return float(params["size_min"] + params["size_max"]) / 2


_INTERVAL_KEYS = {"fixed": ("interval",), "uniform": ("low", "high"), "bursty": ("intra", "gap")}


def resolve(schedule: Schedule, rate: float | None) -> dict[str, Any]:
    """The process parameters with the target mean rate applied (not for trace/concurrency).

    The arm's own `rate=` key wins over the global `rate`. Interval kinds are scaled by one factor
    so their shape (e.g. low/high ratio, intra/gap ratio) is kept; poisson/gamma take the rate as is.
    """
    params = {k: v for k, v in schedule.params.items() if k not in ("name", "rate")}
    target = schedule.params.get("rate", rate)
    kind = schedule.kind
    if kind in ("poisson", "gamma"):
        if target is None:
            raise ValueError(f"{kind}: needs rate (in the schedule or --rate)")
        params["rate"] = float(target)
        return params
    if kind == "fixed" and "interval" not in params:
        # parse_schedule's check already demands interval or rate; a Schedule built by hand may not.
        if target is None:
            raise ValueError("fixed: needs interval or rate (in the schedule or --rate)")
        params["interval"] = 1.0 / float(target)
        return params
    if target is not None:
        factor = (1.0 / float(target)) / mean_gap(kind, params)
        for key in _INTERVAL_KEYS[kind]:
            params[key] = params[key] * factor
    return params


def help_text() -> str:
    """Every schedule kind with its keys, for `--help`."""
    lines = ["Schedules (--schedule KIND:key=value,...; repeat to make arms):"]
    for kind in KINDS.values():
        lines.append(f"  {kind.name}: {kind.summary}")
        for key in kind.keys:
            if key.name == "name":
                continue
            flag = " (required)" if key.required else ""
            shown = str(key.default).lower() if isinstance(key.default, bool) else key.default
            default = f" (default {shown})" if key.default is not None else ""
            lines.append(f"      {key.name}: {key.help}{flag}{default}")
    lines.append("  every kind also takes name=ARM.")
    return "\n".join(lines)
