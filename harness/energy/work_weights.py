"""How much work each request did where: the weights of the `tokens` and `steps` splits.

`tokens`: prompt tokens spread over the stretch before the first token, output tokens at their chunks
(`lifetimes.py`). With a usable fit (`token_fit.py`: `a` J per step, `b` per decoded token, `c` per
prompt token) a prompt token weighs `c` and an output token `b + a / (mean step size)` (it came out of
one step, whose own cost its requests share); otherwise both weigh one (equal weights).

`steps`: every chunk is a request's part in one reconstructed engine step (`steps.py`). A chunk weighs
`b` per decoded token it carries plus `a / n` per token, its share of the step's own cost `a` among
the `n` requests in that step (a chunk of k tokens stood for k steps); a request's first chunk also
carries its prompt tokens at `c` each (the step that made the first token ran the prefill). Requests
whose work has no place in time (not streamed, or no first token) keep a stretch over their lifetime
(or up to the first token) holding their prompt tokens at `c`, and, when not streamed, their output
tokens at `b + a / (mean step size)`. Without a usable fit the weights are `PRIOR`, the regression of
issue 16 on the committed H100 runs. Energy is then shared by work within pools (`steps.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from harness.energy.flags import TOKEN_FIT_UNUSABLE, FlagList
from harness.energy.lifetimes import PointMasses, Tokens
from harness.energy.steps import Steps
from harness.energy.summary_types import TokenFitSummary
from harness.energy.token_fit import TokenFit, chunk_work

# J per engine step, per decoded token, per prompt token on an H100 (issue 16: a regression of
# counter segments of docs/results/arrival-shaping-h100, R² 0.96). Only their ratios matter here.
PRIOR = (0.35, 4.3e-3, 5.5e-3)


@dataclass(frozen=True)
class Weighted:
    stretch_tokens: np.ndarray  # work units spread evenly over each request's stretch
    masses: PointMasses  # work units at the chunks
    prompt_mass: np.ndarray  # per request: the part of its first chunk that is its prompt (steps)
    weights: str  # "fitted", "equal" or "prior"
    coef: tuple[float, float, float]  # (a, b, c) used


def weigh(method: str, tok: Tokens, steps: Steps, fit: TokenFit | None) -> Weighted:
    """The work of the `tokens` or `steps` split (module docstring), with `fit`'s weights if usable."""
    usable = fit is not None and fit.usable
    zero = np.zeros(len(tok.stretch_end))
    mean_size = float(steps.size.mean()) if steps.count else 1.0
    if method == "tokens":
        # An output token came out of one step, whose own cost is shared among the requests in it:
        # without the steps, an output token weighs b + a / (mean step size).
        if not (usable and fit is not None and fit.coef[0] + fit.coef[1] > 0 and fit.coef[2] > 0):
            return Weighted(tok.stretch_tokens, tok.masses, zero, "equal", (0.0, 1.0, 1.0))
        a, b, c = (float(v) for v in fit.coef)
        out = b + a / mean_size
        stretch = c * tok.prompt + np.where(tok.streamed, 0.0, out * tok.output)
        masses = replace(tok.masses, per_chunk=out * tok.masses.per_chunk)
        return Weighted(stretch, masses, zero, "fitted", (0.0, out, c))
    if usable and fit is not None:
        a, b, c = (float(v) for v in fit.coef)
        label = "fitted"
    else:
        (a, b, c), label = PRIOR, "prior"
    m = tok.masses
    mass = np.zeros(len(m))
    for r0, r1, o0, o1 in m.ranges():  # in blocks: bounded temporaries on long streams
        per_chunk, decoded, prompt, first = chunk_work(tok, steps, tok.prefill, r0, r1, o0, o1)
        # A chunk carrying k tokens stands for k steps (one token per request and step: a stream whose
        # reader fell behind gets several steps' tokens in one chunk), each at the chunk's step's size.
        share = a * per_chunk / steps.size[steps.step[o0:o1]]
        # Chunks of requests not streamed weigh 0 (their stretch holds their work).
        mass[o0:o1] = np.where(per_chunk > 0, b * decoded + share, 0.0) + np.where(first, c * prompt, 0.0)
    prompt_at_first = np.where(tok.prefill, c * tok.prompt, 0.0)  # per request
    stretch = np.where(tok.prefill, 0.0, c * tok.prompt) + np.where(
        tok.streamed, 0.0, (b + a / mean_size) * tok.output
    )
    masses = PointMasses(m.flat, m.offsets, np.ones(len(tok.prompt)), m.block, mass=mass)
    return Weighted(stretch, masses, prompt_at_first, label, (a, b, c))


def fit_report(weighted: Weighted | None, fit: TokenFit | None, flags: FlagList) -> TokenFitSummary | None:
    """The fit for summary.json, flagged where the split could not use it."""
    if weighted is None or fit is None:
        return None
    if weighted.weights == "equal":
        # A usable fit has no reason of its own: `tokens` still needs a prompt and an output weight.
        why = fit.reason or "no positive weight for prompt tokens, or none for output tokens"
        flags.add(TOKEN_FIT_UNUSABLE, "info", f"work fit not used ({why}): tokens weigh equally")
    elif weighted.weights == "prior":
        flags.add(
            TOKEN_FIT_UNUSABLE,
            "warning",
            f"work fit not used ({fit.reason}): the steps split weighs work with the H100 prior "
            f"(J per step, decoded token, prompt token: {', '.join(f'{v:g}' for v in PRIOR)})",
        )
    return fit.summary(weighted.weights)
