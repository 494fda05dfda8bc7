"""What a plan really contains: realized rate, gap statistics and goodness of fit, per arm and overall.

Statistics are over the gaps between consecutive offsets of an arm (arms run one after another, so
gaps never cross arms). For each open-loop arm:
- `mean_rate` = 1 / mean gap (requests/s); `duration_s` = the last offset (arm start → last arrival);
- `gap_cv` = std / mean of the gaps (0 for fixed, (high-low) / (sqrt(3)·(high+low)) for uniform,
  1 for Poisson); `burstiness` = (std - mean) / (std + mean) (Goh & Barabási): -1 periodic,
  0 Poisson, towards 1 bursty;
- `ks_statistic`/`ks_pvalue`: one-sample Kolmogorov–Smirnov test of the gaps against the requested
  gap distribution (fixed: a point mass; uniform: U[low, high]; bursty: the two-point mix of intra
  and gap; poisson: exponential; gamma: gamma(1/cv², cv²/rate); trace: exponential at the realized
  rate, i.e. "how Poisson is this trace"). For point masses the p-value is conservative.
Overall figures pool the gaps of all open-loop arms; the overall KS statistic is the largest of the
arms' and its p-value the smallest, Bonferroni-corrected for the number of arms tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from traffic.plan import ArmSpec, Plan

# Gaps are differences of float offsets: allow for rounding when comparing them with point masses.
_ATOL = 1e-9


def describe_plan(plan: Plan) -> dict[str, Any]:
    header = plan.header
    arms = [describe_arm(arm, plan.arm(arm.name)) for arm in header.arms]
    gaps = np.concatenate(
        [_gaps(plan.arm(arm.name)) for arm in header.arms if not arm.closed_loop] or [np.empty(0)]
    )
    tested = [a for a in arms if a["ks_pvalue"] is not None]
    source = header.prompt_source
    summary: dict[str, Any] = {
        "plan_hash": header.plan_hash,
        "schema_version": header.schema_version,
        "seed": header.seed,
        "n": header.n,
        "arms_count": len(arms),
        "duration_s": float(sum(a["duration_s"] or 0.0 for a in arms)),
        "target_mean_rate": header.target_mean_rate,
        **_gap_stats(gaps),
        "ks_statistic": max((a["ks_statistic"] for a in tested), default=None),
        "ks_pvalue": min(1.0, len(tested) * min(a["ks_pvalue"] for a in tested)) if tested else None,
        "prompt_source": {
            k: source.get(k) for k in ("spec", "kind", "content_hash", "records", "pool", "skipped")
        },
        "prompt_tokens_from": prompt_tokens_from(plan),
        "arms": arms,
    }
    summary["notes"] = notes(summary)
    return {k: _finite(v) for k, v in summary.items()}


def prompt_tokens_from(plan: Plan) -> str | None:
    """What the `prompt_tokens` column holds: "tokenizer" counts, a "trace"'s input lengths, or None.

    Only a tokenizer or a trace arm with lengths fills the column, so a plan without a tokenizer whose
    column is filled holds a trace's lengths (plans built before this was said included)."""
    options = plan.header.prompt_source.get("options") or {}
    if plan.rows["prompt_tokens"].isna().all():
        return None
    return "tokenizer" if options.get("tokenizer") else "trace"


def build_warnings(plan: Plan) -> list[str]:
    """What the command that built `plan` should warn about (building itself prints nothing)."""
    if prompt_tokens_from(plan) != "trace":
        return []
    lead = next(arm.name for arm in plan.header.arms if arm.kind == "trace" and arm.params.get("lengths"))
    return [
        f"prompt_tokens are trace arm {lead!r}'s input lengths, not counts of the prompts' tokens "
        "(no tokenizer given; --tokenizer FILE counts them)"
    ]


def notes(summary: dict[str, Any]) -> list[str]:
    """One line each for what the figures do not say by themselves."""
    lines = []
    if summary["prompt_tokens_from"] == "trace":
        lines.append(
            "prompt_tokens are the trace's input lengths, not counts of the prompts' tokens (built "
            "without a tokenizer: the prompts were only made or picked to be about that long)"
        )
    skipped = summary["prompt_source"].get("skipped")
    if skipped:
        total = skipped + (summary["prompt_source"].get("records") or 0)
        lines.append(f"{skipped} of {total} source records skipped (empty prompt or no user turn)")
    return lines


def describe_arm(arm: ArmSpec, rows: pd.DataFrame) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": arm.name,
        "kind": arm.kind,
        "spec": arm.spec,
        "n": len(rows),
        "closed_loop": arm.closed_loop,
        "users": arm.users,
        "target_rate": arm.mean_rate,
        "prompt_chars_mean": float(rows["prompt_chars"].mean()) if len(rows) else None,
        "prompt_tokens_mean": _mean(rows["prompt_tokens"]),
        "max_tokens_mean": _mean(rows["max_tokens"]),
    }
    if arm.closed_loop:
        return {
            **info,
            "duration_s": None,
            **_gap_stats(np.empty(0)),
            "ks_statistic": None,
            "ks_pvalue": None,
            "ks_reference": None,
        }
    offsets = rows["offset_s"].to_numpy(dtype=float)
    gaps = np.diff(offsets)
    requested = reference(arm, gaps)
    ks_stat = ks_p = None
    if requested is not None and len(gaps) >= 2:
        ks_stat, ks_p = requested.ks(gaps)
    return {
        **info,
        "duration_s": float(offsets[-1]) if len(offsets) else 0.0,
        **_gap_stats(gaps),
        "ks_statistic": ks_stat,
        "ks_pvalue": ks_p,
        "ks_reference": requested.label if requested else None,
    }


@dataclass(frozen=True)
class Reference:
    """A requested gap distribution: a continuous scipy distribution, or point masses (value, weight)."""

    label: str
    continuous: Any = None
    atoms: tuple[tuple[float, float], ...] = ()

    def ks(self, gaps: np.ndarray) -> tuple[float, float]:
        if self.continuous is not None:
            result = stats.kstest(gaps, self.continuous.cdf)
            return float(result.statistic), float(result.pvalue)
        return _ks_atoms(gaps, self.atoms)


def reference(arm: ArmSpec, gaps: np.ndarray) -> Reference | None:
    """The requested gap distribution of an arm; None where there is none (closed loop)."""
    p = arm.params
    if arm.kind == "fixed":
        return Reference(f"point mass at {p['interval']:.6g} s", atoms=((p["interval"], 1.0),))
    if arm.kind == "uniform":
        return Reference(
            f"U[{p['low']:.6g}, {p['high']:.6g}] s", stats.uniform(p["low"], p["high"] - p["low"])
        )
    if arm.kind == "bursty":
        size = float(p["size"]) if "size" in p else (p["size_min"] + p["size_max"]) / 2
        share = 1.0 / size  # one inter-burst gap per burst
        label = f"intra {p['intra']:.6g} s w.p. {1 - share:.4g}, gap {p['gap']:.6g} s w.p. {share:.4g}"
        return Reference(label, atoms=((p["intra"], 1 - share), (p["gap"], share)))
    if arm.kind == "poisson":
        return Reference(f"exponential, mean {1 / p['rate']:.6g} s", stats.expon(scale=1 / p["rate"]))
    if arm.kind == "gamma":
        shape = 1 / p["cv"] ** 2
        label = f"gamma, mean {1 / p['rate']:.6g} s, cv {p['cv']:.4g}"
        return Reference(label, stats.gamma(shape, scale=1 / (p["rate"] * shape)))
    if arm.kind == "trace" and len(gaps) and gaps.mean() > 0:
        label = f"exponential at the realized rate (Poisson check), mean {gaps.mean():.6g} s"
        return Reference(label, stats.expon(scale=gaps.mean()))
    return None


def _ks_atoms(gaps: np.ndarray, atoms: tuple[tuple[float, float], ...]) -> tuple[float, float]:
    """Exact KS distance to a discrete distribution; p-value from the continuous law (conservative)."""
    values = np.array([v for v, _ in atoms])
    weights = np.array([w for _, w in atoms])
    sample = np.sort(gaps.astype(float))
    # Gaps are differences of float offsets: snap those within rounding of an atom onto it.
    for value in values:
        sample[np.abs(sample - value) <= _ATOL * max(1.0, value)] = value
    points = np.union1d(sample, values)
    n = len(sample)
    emp_right = np.searchsorted(sample, points, side="right") / n
    emp_left = np.searchsorted(sample, points, side="left") / n
    ref_right = (weights * (points[:, None] >= values)).sum(axis=1)
    ref_left = (weights * (points[:, None] > values)).sum(axis=1)
    distance = float(max(np.abs(emp_right - ref_right).max(), np.abs(emp_left - ref_left).max()))
    return distance, float(stats.kstwo.sf(distance, n))


def _gaps(rows: pd.DataFrame) -> np.ndarray:
    return np.diff(rows["offset_s"].to_numpy(dtype=float))


def _gap_stats(gaps: np.ndarray) -> dict[str, float | None]:
    if len(gaps) == 0:
        return {"mean_rate": None, "gap_mean_s": None, "gap_cv": None, "burstiness": None}
    mean, std = float(gaps.mean()), float(gaps.std())
    return {
        "mean_rate": 1 / mean if mean > 0 else None,
        "gap_mean_s": mean,
        "gap_cv": std / mean if mean > 0 else None,
        "burstiness": (std - mean) / (std + mean) if std + mean > 0 else None,
    }


def _mean(column: pd.Series) -> float | None:
    values = column.dropna()
    return float(values.mean()) if len(values) else None


def _finite(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
