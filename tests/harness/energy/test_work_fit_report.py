"""The flag that says why the `tokens` split did not use the run's work fit names a reason even when the
fit itself was usable (a usable fit whose prompt weight is 0 still leaves the tokens equal)."""

from __future__ import annotations

import numpy as np

from harness.energy.flags import TOKEN_FIT_UNUSABLE, FlagList
from harness.energy.lifetimes import PointMasses
from harness.energy.token_fit import TokenFit
from harness.energy.work_weights import Weighted, fit_report


def test_a_usable_fit_the_tokens_split_cannot_use_says_why() -> None:
    fit = TokenFit(np.array([0.3, 4e-3, 0.0]), 0.97, 40, 12.0, True, None)  # no prompt weight
    masses = PointMasses(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0))
    weighted = Weighted(np.zeros(0), masses, np.zeros(0), "equal", (0.0, 1.0, 1.0))
    flags = FlagList()
    summary = fit_report(weighted, fit, flags)
    (flag,) = [f for f in flags if f.code == TOKEN_FIT_UNUSABLE]
    assert "None" not in flag.message and "prompt" in flag.message
    assert summary is not None and summary["usable"] and summary["weights"] == "equal"
