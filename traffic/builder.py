"""`build_plan(spec) -> Plan`: prompts × schedules → a sealed, hashed arrival plan.

Every random choice draws from its own stream derived from the plan seed, so changing one arm does
not change the prompts or the other arms: prompts use `[seed, 1]`, trace length matching
`[seed, 2]`, and each arm `[seed, 3, crc32(arm name)]` (with policies: of its schedule's name).

With shaping policies, each schedule's arrivals are drawn once and every policy's arm repeats them:
the policies see the same users arrive at the same times with the same prompts (common random
numbers), so the difference between two arms of a schedule is their policies'.

All arms share one prompt sequence: arm rows take the sequence from its start (an arm with fewer
requests uses a prefix of it). When a trace arm carries token lengths (`lengths=true` and the trace
has input/output token columns), the sequence is the prompts matched to that trace's input lengths,
with `max_tokens` set to its output lengths (capped by `max_tokens` when given), and the other arms
replay that same sequence.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from foundation.errors import InputError
from traffic.arrivals import process_offsets
from traffic.plan import ArmSpec, Plan, PlanHeader, make_plan
from traffic.prompts import PromptOptions, PromptPool, PromptSource, load_source
from traffic.schedules import Schedule, mean_gap, resolve
from traffic.spec import PlanSpec, policy_text
from traffic.traces import Trace, load_trace, replay_offsets, window_indices, window_rate

_PROMPT_STREAM = 1
_MATCH_STREAM = 2
_ARM_STREAM = 3

Progress = Callable[[str], None]
# How a trace file is read (path, format, time_col, unit, input_col, output_col): each is loaded once.
_TraceKey = tuple[str, str, str | None, str, str | None, str | None]


@dataclass
class _Arm:
    spec: ArmSpec
    offsets: np.ndarray  # NaN for closed loop
    trace: Trace | None = None
    trace_rows: np.ndarray | None = None  # rows of the trace replayed, in order


def build_plan(spec: PlanSpec, progress: Progress | None = None) -> Plan:
    """Build the plan described by `spec`. Bad input raises InputError; nothing is written."""
    say = progress or (lambda message: None)
    say("scheduling arrivals")
    scheduled = _schedule_arms(spec)
    lead = _length_lead(scheduled)  # of the schedules: a policy's copy of a trace arm leads nothing new
    arms = _with_policies(spec, scheduled)
    demand = max(len(arm.offsets) for arm in arms)

    say("loading prompts")
    options = _prompt_options(spec)
    source = load_source(options, demand, np.random.default_rng([spec.seed, _PROMPT_STREAM]))
    if lead is None:
        sequence = source.sequence(demand, np.random.default_rng([spec.seed, _PROMPT_STREAM]))
        prompt_tokens, max_tokens = sequence.tokens, None
    else:
        say("matching prompts to the trace's input lengths")
        sequence, prompt_tokens, max_tokens = _match_trace(spec, source, lead)
    if spec.ignore_eos and spec.max_tokens is None and max_tokens is None:
        raise InputError("ignore_eos: needs max_tokens (otherwise generation runs to the context limit)")

    say("assembling rows")
    rows = _rows(spec, arms, sequence, prompt_tokens, max_tokens)
    header = PlanHeader(
        seed=spec.seed,
        arms=tuple(arm.spec for arm in arms),
        prompt_source=source.info,
        n=len(rows),
        target_mean_rate=_target_rate(spec, arms),
        extra={
            "spec": spec.model_dump(mode="json"),
            "requests_per_arm": {a.spec.name: len(a.offsets) for a in arms},
        },
    )
    say("hashing")
    return make_plan(header, rows)


def _schedule_arms(spec: PlanSpec) -> list[_Arm]:
    traces: dict[_TraceKey, Trace] = {}
    named = list(zip(spec.schedule_names, spec.parsed_schedules, strict=True))
    replays = {name: _trace_arm(spec, name, s, traces) for name, s in named if s.kind == "trace"}
    # Without n or duration, the other arms get as many requests as the first trace arm.
    follow = None
    if replays and spec.n is None and spec.duration is None:
        follow = len(next(iter(replays.values())).offsets)
    return [replays[name] if name in replays else _build_arm(spec, name, s, follow) for name, s in named]


def _with_policies(spec: PlanSpec, arms: list[_Arm]) -> list[_Arm]:
    """Each schedule's arm once per policy, schedule by schedule, with the same arrivals; as is without."""
    policies = spec.parsed_policies
    if not policies:
        return arms
    names = iter(spec.arm_names)
    return [
        replace(arm, spec=replace(arm.spec, name=next(names), policy=policy_text(p), policy_name=p.name))
        for arm in arms
        for p in policies
    ]


def _length_lead(arms: list[_Arm]) -> _Arm | None:
    """The trace arm whose token lengths decide the prompts and max_tokens, if any."""
    leads = [arm for arm in arms if arm.spec.kind == "trace" and arm.spec.params["lengths"]]
    if len(leads) > 1:
        names = ", ".join(arm.spec.name for arm in leads)
        raise InputError(
            f"schedules: only one trace arm may set prompt lengths (arms {names}); "
            "add lengths=false to the others"
        )
    if leads:
        longer = [arm.spec.name for arm in arms if len(arm.offsets) > len(leads[0].offsets)]
        if longer:
            raise InputError(
                f"arm(s) {', '.join(longer)} need more requests than the {len(leads[0].offsets)} whose "
                f"lengths trace arm {leads[0].spec.name!r} sets; lower n or duration"
            )
    return leads[0] if leads else None


def _match_trace(
    spec: PlanSpec, source: PromptSource, lead: _Arm
) -> tuple[PromptPool, np.ndarray, np.ndarray]:
    """(prompt sequence, prompt_tokens, max_tokens) following the lead trace's token lengths."""
    if source.options.source.kind == "synthetic" and source.options.filtered:
        raise InputError(
            "prompt length filters do not apply to synthetic prompts made to a trace's lengths; "
            "drop them or add lengths=false to the trace"
        )
    assert lead.trace is not None and lead.trace_rows is not None
    assert lead.trace.input_tokens is not None and lead.trace.output_tokens is not None
    wanted = lead.trace.input_tokens[lead.trace_rows]
    sequence = source.matching(wanted, np.random.default_rng([spec.seed, _MATCH_STREAM]))
    max_tokens = np.maximum(lead.trace.output_tokens[lead.trace_rows], 1)
    if spec.max_tokens is not None:
        max_tokens = np.minimum(max_tokens, spec.max_tokens)
    if sequence.tokens is not None:
        return sequence, sequence.tokens, max_tokens
    # Nothing counted the prompts' tokens: the column holds what the trace asked for, which is only
    # about what the prompts hold (~4 characters per token): traffic.describe.build_warnings says so.
    return sequence, wanted, max_tokens


def _build_arm(spec: PlanSpec, name: str, schedule: Schedule, follow: int | None) -> _Arm:
    rng = np.random.default_rng([spec.seed, _ARM_STREAM, zlib.crc32(name.encode())])
    n = spec.n if follow is None else follow
    if schedule.kind == "concurrency":
        users = schedule.params["n"]
        assert n is not None  # PlanSpec guarantees it
        arm = ArmSpec(name, "concurrency", {"n": users}, schedule.spec, None, users)
        return _Arm(arm, np.full(n, np.nan))
    try:
        params = resolve(schedule, spec.rate)
        offsets = process_offsets(schedule.kind, params, rng, n, spec.duration)
    except ValueError as exc:
        raise InputError(f"schedule {schedule.spec!r}: {exc}") from None
    if len(offsets) == 0:
        raise InputError(f"schedule {schedule.spec!r}: no request falls within duration {spec.duration:g} s")
    rate = 1.0 / mean_gap(schedule.kind, params)
    return _Arm(ArmSpec(name, schedule.kind, params, schedule.spec, rate), offsets)


def _trace_arm(spec: PlanSpec, name: str, schedule: Schedule, traces: dict[_TraceKey, Trace]) -> _Arm:
    p = schedule.params
    key = (p["path"], p["format"], p.get("time_col"), p["unit"], p.get("input_col"), p.get("output_col"))
    if key not in traces:
        traces[key] = load_trace(
            p["path"],
            p["format"],
            time_col=p.get("time_col"),
            unit=p["unit"],
            input_col=p.get("input_col"),
            output_col=p.get("output_col"),
        )
    trace = traces[key]
    start, end = p["start"], p.get("end")
    rows = window_indices(trace, start, end)
    span = trace.times_s[rows[-1]] - trace.times_s[rows[0]]
    trace_rate = window_rate(trace, rows) if span > 0 else None
    target = p.get("rate", spec.rate)
    time_scale = p.get("time_scale", 1.0)
    if target is not None:
        # A window whose requests all arrive at once has no rate to scale.
        time_scale = window_rate(trace, rows) / target
    offsets, replayed = replay_offsets(trace, time_scale, start, end, spec.n, spec.duration)
    params: dict[str, Any] = {
        "path": p["path"],
        "format": trace.format,
        "sha256": trace.sha256,
        "time_scale": float(time_scale),
        "start": start,
        "end": end,
        "lengths": bool(p["lengths"]) and trace.has_lengths,
        "rows_replayed": [int(replayed[0]), int(replayed[-1])],
    }
    mean_rate = float(trace_rate / time_scale) if trace_rate is not None else None
    return _Arm(ArmSpec(name, "trace", params, schedule.spec, mean_rate), offsets, trace, replayed)


def _prompt_options(spec: PlanSpec) -> PromptOptions:
    return PromptOptions(
        source=spec.source,
        fields=dict(spec.fields),
        conversation=spec.conversation,
        polite=spec.polite,
        tokenizer=spec.tokenizer,
        sample=spec.sample,
        replace=spec.replace,
        min_chars=spec.min_prompt_chars,
        max_chars=spec.max_prompt_chars,
        min_tokens=spec.min_prompt_tokens,
        max_tokens=spec.max_prompt_tokens,
    )


def _rows(
    spec: PlanSpec,
    arms: list[_Arm],
    sequence: PromptPool,
    prompt_tokens: np.ndarray | None,
    max_tokens: np.ndarray | None,
) -> pd.DataFrame:
    counts = [len(arm.offsets) for arm in arms]
    total = sum(counts)
    # Each arm replays the shared sequence from its start: index 0..count-1 of it.
    index = np.concatenate([np.arange(c) for c in counts])
    if max_tokens is None:
        tokens_out: Any = pd.array([spec.max_tokens] * total, dtype="Int64")
    else:
        tokens_out = max_tokens[index]
    # Annotated: pandas-stubs 3 types the constructor with typing.Self, which a Python 3.10 target lacks.
    rows: pd.DataFrame = pd.DataFrame(
        {
            "request_id": np.arange(total, dtype=np.int64),
            "arm": np.repeat([arm.spec.name for arm in arms], counts),
            "seq": index.astype(np.int64),
            "offset_s": np.concatenate([arm.offsets for arm in arms]).astype(float),
            "prompt_id": sequence.ids[index],
            "prompt": sequence.prompts[index],
            "messages": sequence.messages[index],
            "prompt_chars": sequence.chars[index],
            "prompt_tokens": (
                pd.array([None] * total, dtype="Int64") if prompt_tokens is None else prompt_tokens[index]
            ),
            "max_tokens": tokens_out,
            "ignore_eos": np.full(total, spec.ignore_eos),
            "temperature": np.full(total, np.nan if spec.temperature is None else spec.temperature),
        }
    )
    return rows


def _target_rate(spec: PlanSpec, arms: list[_Arm]) -> float | None:
    if spec.rate is not None:
        return spec.rate
    rates = [arm.spec.mean_rate for arm in arms]
    known = [rate for rate in rates if rate is not None]
    if len(known) < len(rates):
        return None
    same = all(math.isclose(rate, known[0], rel_tol=1e-9) for rate in known)
    return float(known[0]) if same else None
