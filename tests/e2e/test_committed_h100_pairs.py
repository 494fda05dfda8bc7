"""The H100 page's claim that its three repeats do not tell bursty apart from fixed or uniform.

docs/results/arrival-shaping-h100 ran the six arms three times in one order; its reading notes say the
paired 95% intervals over those repeats include zero. This recomputes them from the committed run
folders with the experiment statistics (each run is a repeat, each arm of it a cell).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.energy.repeats import pair_differences
from harness.experiment.cell_figures import cell_figures

RAW = Path(__file__).resolve().parents[2] / "docs/results/arrival-shaping-h100/raw"
ARMS = ("fixed-50ms", "uniform-20rps", "bursty-20rps")


def test_bursty_is_not_distinguishable_from_fixed_or_uniform_over_three_repeats() -> None:
    rows = [
        {"repeat": r, "rate": math.nan, "arm": arm, "status": "done", **cell_figures(run, arm, None)}
        for r, run in enumerate(sorted(RAW.iterdir()), start=1)
        for arm in ARMS
    ]
    pairs = pair_differences(pd.DataFrame(rows), "j_per_request_all_in", multiplicity="none")
    by_pair = {(p.a, p.b): p for p in pairs}
    assert len(rows) == 9
    for other in ("fixed-50ms", "uniform-20rps"):
        pair = by_pair[(other, "bursty-20rps")]
        assert pair.repeats == 3 and pair.ci is not None
        assert pair.ci[0] < 0 < pair.ci[1] and pair.winner is None
