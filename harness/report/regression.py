"""`check`: is a run (or an experiment) worse than a baseline by more than a threshold? Pure: figures in,
verdicts and a table out (the files are read by `regression_inputs`).

Three figures per arm, matched by arm name (and offered rate in experiments), each worse when higher:
all-in J per request (the window's energy over its successful requests), TTFT p50 and E2E p50 (s, at
the server). p50 rather than p99: a regression gate must not fire on the one slow request a short CI
run happens to hold, and the median's interval is narrow enough at a few dozen requests to be read.

With baseline b, candidate c and threshold t (0.05 for 5%), the allowed increase is t·b, and [L, U] is
a 95% interval of the difference c − b:
- single runs: from each run's own bootstrap 95% interval (summary.json's `all_in.ci95`; for latency a
  seeded bootstrap of the median over the run's requests), combined by MOVER (Zou & Donner 2008):
  L = (c − b) − √((c − c_lo)² + (b_hi − b)²), U = (c − b) + √((c_hi − c)² + (b − b_lo)²), each
  half-width at least 0. Those intervals are bootstraps over one run's requests: run-to-run variation
  (host load, drift) is not in them, so single runs from two machines or times can show noise as a
  regression;
- experiments: the repeat is the unit (`harness.energy.repeats`): a Welch t-interval of the difference
  of the two experiments' means over their done repeats (one value per cell). The two experiments ran
  at different times, so repeat k of one shares no host state with repeat k of the other: unpaired.

Verdict: `regressed` when L > t·b (the whole interval lies beyond the allowed increase), `ok` when
U ≤ t·b, `inconclusive` otherwise (no regression is claimed; the table shows it). Without an interval
(a missing CI, fewer than 2 repeats on a side) the point estimate decides, and the verdict says so. An
experiment with cells not done (pending, running) has a `note:` per arm with its done and planned
repeats; under 2 done of more planned, it fails: an unfinished experiment's one repeat decides nothing.

An arm with an error flag in either run (incomplete power, late sends, failed clients, ...), an arm of
the baseline that the candidate lacks, or a figure that cannot be computed (or that is not finite, or
has a bound that is not) is a failure with one line saying why: a check never passes on a figure it
could not trust. An inconclusive figure passes (exit 0), and the PASS line names it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METRICS = {"all_in_j": "J/request (all-in)", "ttft_p50_s": "TTFT p50 (s)", "e2e_p50_s": "E2E p50 (s)"}
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """One figure of one arm: its value and the 95% interval of it (None where there is none)."""

    value: float | None
    ci: tuple[float, float] | None = None


@dataclass(frozen=True)
class ArmFigures:
    """What one run (or one experiment, at one rate) says about one arm."""

    arm: str  # "fixed", or "fixed @ 2 req/s" in an experiment with offered rates
    figures: dict[str, Estimate]  # METRICS key -> estimate
    errors: list[str]  # codes of the error flags that concern it: its figures cannot be trusted
    repeats: dict[str, list[float]] | None = None  # experiments: METRICS key -> one value per repeat
    done: tuple[int, int] | None = None  # experiments: (done, planned) repeats


@dataclass(frozen=True)
class Row:
    arm: str
    metric: str
    baseline: float | None
    candidate: float | None
    change: float | None  # (c - b) / b
    ci: tuple[float, float] | None  # of (c - b) / b
    verdict: str  # "ok", "inconclusive", "regressed", each maybe with "(no CI)"; "error"
    failed: bool


@dataclass(frozen=True)
class CheckResult:
    rows: list[Row]
    problems: list[str]  # one line each: an error flag, a missing arm, a figure that is not there
    notes: list[str]  # said, but not a failure (an arm new in the candidate)

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(r.failed for r in self.rows)


def parse_threshold(text: str) -> float:
    """'5%' -> 0.05; ValueError (its message names what is wrong) for anything else."""
    number = text.strip().removesuffix("%")
    if number == text.strip():
        raise ValueError("give a percentage, e.g. 5%")
    try:
        value = float(number) / 100
    except ValueError:
        raise ValueError("not a number followed by %") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("must be 0% or more")
    return value


def mover_difference(b: Estimate, c: Estimate) -> tuple[float, float] | None:
    """95% interval of c − b from the two independent intervals (MOVER); None without both."""
    if b.value is None or c.value is None or b.ci is None or c.ci is None:
        return None
    d = c.value - b.value
    # Clamped: a point outside its own interval (an odd summary) gives a negative half-width, which
    # squared would widen the difference's interval as if the point were inside it.
    low = d - math.hypot(max(0.0, c.value - c.ci[0]), max(0.0, b.ci[1] - b.value))
    high = d + math.hypot(max(0.0, c.ci[1] - c.value), max(0.0, b.value - b.ci[0]))
    return low, high


def welch_difference(b: Sequence[float], c: Sequence[float]) -> tuple[float, float] | None:
    """95% Welch t-interval of mean(c) − mean(b) over repeats; None under 2 values on a side."""
    vb, vc = np.asarray(b, dtype=np.float64), np.asarray(c, dtype=np.float64)
    vb, vc = vb[np.isfinite(vb)], vc[np.isfinite(vc)]
    if len(vb) < 2 or len(vc) < 2:
        return None
    sb, sc = vb.var(ddof=1) / len(vb), vc.var(ddof=1) / len(vc)
    d = float(vc.mean() - vb.mean())
    if sb + sc == 0:
        return d, d
    df = (sb + sc) ** 2 / (sb**2 / (len(vb) - 1) + sc**2 / (len(vc) - 1))
    # Imported here: scipy.stats costs every command that imports this module half a second otherwise.
    from scipy import stats

    half = float(stats.t.ppf(1 - (1 - LEVEL) / 2, df)) * math.sqrt(sb + sc)
    return d - half, d + half


def judge(b: float, c: float, diff_ci: tuple[float, float] | None, threshold: float) -> tuple[str, bool]:
    """The verdict on one figure, and whether it fails the check."""
    allowed = threshold * b
    if diff_ci is None:
        regressed = c - b > allowed
        return ("regressed" if regressed else "ok") + " (no CI)", regressed
    low, high = diff_ci
    if low > allowed:
        return "regressed", True
    return ("ok" if high <= allowed else "inconclusive"), False


def check(baseline: Sequence[ArmFigures], candidate: Sequence[ArmFigures], threshold: float) -> CheckResult:
    """Every arm of the baseline against the candidate's arm of the same name, figure by figure."""
    ours = {a.arm: a for a in candidate}
    rows: list[Row] = []
    problems: list[str] = []
    notes: list[str] = []
    for base in baseline:
        cand = ours.get(base.arm)
        if cand is None:
            problems.append(f"arm {base.arm}: in the baseline, not in the candidate (nothing to check it by)")
            continue
        for side, arm in (("baseline", base), ("candidate", cand)):
            if arm.errors:
                problems.append(f"arm {arm.arm}: the {side} is flagged {', '.join(arm.errors)}")
            if arm.done is not None and arm.done[0] < arm.done[1]:
                said = f"arm {arm.arm}: the {side} has {arm.done[0]} of {arm.done[1]} planned repeats done"
                # Under 2 there is no interval, and one repeat of an unfinished experiment is no verdict.
                if arm.done[0] < 2:
                    problems.append(f"{said}, under 2: no interval to judge by")
                else:
                    notes.append(said)
        for metric, label in METRICS.items():
            rows.append(_row(base, cand, metric, label, threshold, bool(base.errors or cand.errors)))
    missing = [f"arm {r.arm}: {r.metric} is missing or not finite" for r in rows if r.verdict == "missing"]
    notes += [f"arm {a.arm}: new in the candidate (no baseline)" for a in candidate if a.arm not in
              {b.arm for b in baseline}]  # fmt: skip
    return CheckResult(rows, problems + missing, notes)


def _row(base: ArmFigures, cand: ArmFigures, metric: str, label: str, threshold: float, flagged: bool) -> Row:
    b, c = base.figures.get(metric, Estimate(None)), cand.figures.get(metric, Estimate(None))
    if b.value is None or c.value is None or not (_finite(b) and _finite(c)) or not b.value > 0:
        return Row(base.arm, label, b.value, c.value, None, None, "error" if flagged else "missing", True)
    if base.repeats is not None and cand.repeats is not None:
        diff_ci = welch_difference(base.repeats.get(metric, []), cand.repeats.get(metric, []))
    else:
        diff_ci = mover_difference(b, c)
    verdict, failed = judge(b.value, c.value, diff_ci, threshold)
    if flagged:
        verdict, failed = "error", True
    relative = None if diff_ci is None else (diff_ci[0] / b.value, diff_ci[1] / b.value)
    return Row(base.arm, label, b.value, c.value, (c.value - b.value) / b.value, relative, verdict, failed)


def _finite(e: Estimate) -> bool:
    """A finite value, and a finite interval if any: a NaN or an infinity compares False with every
    bound and would pass as `ok (no CI)` or `inconclusive`."""
    bounds = () if e.ci is None else e.ci
    return all(math.isfinite(v) for v in (e.value or 0.0, *bounds))


def render(result: CheckResult, threshold: float) -> list[str]:
    """The table (plain text: CI logs are not terminals) and one line per problem, then the outcome."""
    head = ("arm", "figure", "baseline", "candidate", "change", "95% CI of change", "verdict")
    body = [
        (r.arm, r.metric, _num(r.baseline), _num(r.candidate), _pct(r.change),
         "-" if r.ci is None else f"{_pct(r.ci[0])}..{_pct(r.ci[1])}", r.verdict)
        for r in result.rows
    ]  # fmt: skip
    widths = [max(len(str(row[i])) for row in (head, *body)) for i in range(len(head))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (head, *body)
    ]
    lines += [f"note: {n}" for n in result.notes]
    lines += [f"FAIL: {p}" for p in result.problems]
    regressed = [f"{r.arm} {r.metric}" for r in result.rows if r.failed and r.verdict.startswith("regressed")]
    if regressed:
        lines.append(f"FAIL: regressed by more than {threshold * 100:.4g}%: {'; '.join(regressed)}")
    if not result.failed:
        # Only what the intervals show: an inconclusive figure was not shown to be within the threshold.
        unsure = [f"{r.arm} {r.metric}" for r in result.rows if r.verdict == "inconclusive"]
        said = f" ({len(unsure)} inconclusive: {', '.join(unsure)})" if unsure else ""
        lines.append(f"PASS: none shown to regress beyond {threshold * 100:.4g}%{said}")
    return lines


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"
