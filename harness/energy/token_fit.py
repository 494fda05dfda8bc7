"""The per-run fit of dynamic energy on engine work: joules per step, per decoded token, per prompt token.

Per GPU and row k, the dynamic energy (above the idle estimate, as the split computes it) is fitted as

    D_k ≈ a · steps_k + b · decoded_k + c · prompt_k        (a, b, c ≥ 0; no intercept)

where `steps_k` counts the reconstructed engine steps whose chunks arrived in the row, and
`decoded_k` and `prompt_k` the tokens placed in it the way the split places them (`work_weights.py`):
for `steps` a request's prompt at its first chunk (whose token is then not a decoded one), for
`tokens` spread over the stretch before the first token; output tokens at their chunks; the tokens
of a response that was not streamed spread over its lifetime. A row is a pool of sample intervals
(`steps.pooling_windows`, at most `steps.FIT_POOL_S` long, within one busy stretch and one arm), not
one interval: chunks arrive later than the energy was spent, and at the scale of one interval that
shift is noise in the regressors, which would bias the weights towards zero. Rows with no work are
left out. Rows of all GPUs are pooled, so the weights are per GPU.

Non-negative least squares over three unknowns is solved exactly: the unconstrained solution on every
subset of the columns, the best feasible one kept. The fit is *usable* when it rests on at least
`MIN_INTERVALS` rows, its columns are not nearly collinear (condition number of the
column-scaled design at most `MAX_CONDITION`: a run whose steps all hold one request cannot tell a
step from a token), it explains the energy (R² at least `MIN_R2`) and at least one weight is positive.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from harness.energy.lifetimes import Tokens
from harness.energy.steps import Steps
from harness.energy.summary_types import TokenFitSummary

MIN_INTERVALS = 20
MAX_CONDITION = 1e3
MIN_R2 = 0.5
COLUMNS = ("steps", "decoded_tokens", "prompt_tokens")


@dataclass(frozen=True)
class TokenFit:
    coef: np.ndarray  # (a, b, c): J per step, per decoded token, per prompt token
    r2: float
    n_intervals: int
    condition: float
    usable: bool
    reason: str | None

    def summary(self, weights: str) -> TokenFitSummary:
        shown = self.n_intervals > 0 and np.all(np.isfinite(self.coef))
        return {
            "j_per_step": float(self.coef[0]) if shown else None,
            "j_per_decoded_token": float(self.coef[1]) if shown else None,
            "j_per_prompt_token": float(self.coef[2]) if shown else None,
            "r2": float(self.r2) if np.isfinite(self.r2) else None,
            "n_intervals": self.n_intervals,
            "condition": float(self.condition) if np.isfinite(self.condition) else None,
            "usable": self.usable,
            "reason": self.reason,
            "weights": weights,
        }


def nnls3(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares for a design of a few columns (every active set tried)."""
    m = x.shape[1]
    best, best_res = np.zeros(m), float(np.sum(y * y))
    for k in range(1, m + 1):
        for cols in itertools.combinations(range(m), k):
            sub = x[:, cols]
            sol, *_ = np.linalg.lstsq(sub, y, rcond=None)
            if np.any(sol < 0):
                continue
            res = float(np.sum((y - sub @ sol) ** 2))
            if res < best_res:
                best = np.zeros(m)
                best[list(cols)] = sol
                best_res = res
    return best


def fit(design: np.ndarray, dynamic: np.ndarray) -> TokenFit:
    """Fit `dynamic` (J per row) on the `design` rows (steps, decoded, prompt tokens per row)."""
    keep = np.any(design > 0, axis=1) & np.isfinite(dynamic)
    x, y = design[keep], dynamic[keep]
    n = len(y)
    nan3 = np.full(3, np.nan)
    if n < MIN_INTERVALS:
        why = f"{n} pool(s) of sample intervals with work (fewer than {MIN_INTERVALS})"
        return TokenFit(nan3, np.nan, n, np.nan, False, why)
    scale = np.sqrt(np.sum(x * x, axis=0))
    used = scale > 0
    if not np.any(used):
        return TokenFit(nan3, np.nan, n, np.nan, False, "no work in any pool of sample intervals")
    # Condition of the columns that hold work (a run without prompt counts still fits the other two).
    cond = float(np.linalg.cond(x[:, used] / scale[used]))
    coef = nnls3(x, y)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((y - x @ coef) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    reason = None
    if not np.isfinite(cond) or cond > MAX_CONDITION:
        reason = f"ill-conditioned (condition {cond:.3g} > {MAX_CONDITION:g}): steps and tokens move together"
    elif not r2 >= MIN_R2:
        reason = f"R² {r2:.2f} below {MIN_R2}"
    elif not np.any(coef > 0):
        reason = "every weight fitted to 0"
    return TokenFit(coef, r2, n, cond, reason is None, reason)


def chunk_work(
    tok: Tokens, steps: Steps, at_first: np.ndarray, r0: int, r1: int, o0: int, o1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the chunks o0..o1 of requests r0..r1 (a block of `PointMasses.ranges`): tokens per chunk,
    decoded tokens, the request's prompt tokens, and whether the chunk carries that prompt.

    `at_first`, per request: its prompt tokens sit on its first chunk (the `steps` split: the step
    that made the first token ran the prefill, and the first token came out of it, not of a decode
    step); otherwise the prompt is spread over a stretch (not here) and every output token is decoded."""
    m = tok.masses
    lengths = np.diff(m.offsets[r0 : r1 + 1])
    per_chunk = np.repeat(m.per_chunk[r0:r1], lengths)  # 0 for requests not streamed: no place in time
    first = steps.first[o0:o1] & np.repeat(at_first[r0:r1], lengths)
    decoded = np.where(first, np.maximum(per_chunk - 1.0, 0.0), per_chunk)
    return per_chunk, decoded, np.repeat(tok.prompt[r0:r1], lengths), first


def interval_design(
    tau: np.ndarray, chunk_k: np.ndarray, steps: Steps, tok: Tokens, at_first: np.ndarray
) -> np.ndarray:
    """Rows (steps, decoded tokens, prompt tokens) per interval (tau_k, tau_k+1] of one GPU, the chunks'
    tokens placed as `chunk_work` says (stretches are added by the caller).

    `chunk_k`: each chunk's interval (the interval count for none)."""
    n_int = max(len(tau) - 1, 0)
    k = np.searchsorted(tau, steps.time, side="left") - 1
    k = np.where((k >= 0) & (k < n_int), k, n_int)
    design = np.zeros((n_int + 1, 3))
    design[:, 0] = np.bincount(k, minlength=n_int + 1)
    for r0, r1, o0, o1 in tok.masses.ranges():
        _, decoded, prompt, first = chunk_work(tok, steps, at_first, r0, r1, o0, o1)
        where = chunk_k[o0:o1]
        design[:, 1] += np.bincount(where, decoded, minlength=n_int + 1)
        design[:, 2] += np.bincount(where[first], prompt[first], minlength=n_int + 1)
    return design[:n_int]
