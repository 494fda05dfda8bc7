#!/usr/bin/env python3
"""The engine-comparison page (issue 20): the same experiment against several engines on one GPU.

    python benchmarks/gpu/engines_page.py --engine vllm=docs/results/engines-h200/vllm \\
        --engine transformers=docs/results/engines-h200/transformers [--out README.md]

Each engine's folder holds `experiment/` (a `joulebench experiment run` of benchmarks/gpu/engines-h200.yaml),
`machine.txt` and the server record `<engine>_server.json`. Every figure is computed here from the
cells tables (the unit is the repeat: one cell per arm and repeat):

- per engine and arm: all-in J/request, mean over repeats with its t-interval;
- per arm, each engine against the first: the ratio of means, with an interval from Welch's t on the
  log of the per-repeat values (the engines ran in separate experiments, so nothing pairs them);
- per engine, how much arrival shaping moves it: each arm against `sequential` (paired by repeat:
  the same repeat's cells ran back to back in random order) as a ratio with a t-interval on the log
  of the per-repeat ratios, and the spread between its cheapest and dearest arm.

Running it again on the same folders writes the same page, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.energy.repeats import t_interval
from harness.runfolder.experiment_files import ExperimentFolder

METRIC = "j_per_request_all_in"
BASELINE_ARM = "sequential"
LEVEL = 0.95


@dataclass
class Engine:
    name: str
    folder: Path
    cells: pd.DataFrame  # done cells with a finite metric
    server: dict[str, Any]  # the `<name>_server.json` record of `joulebench serve`

    @classmethod
    def load(cls, name: str, folder: Path) -> Engine:
        cells = ExperimentFolder(folder / "experiment").read_cells()
        done = cells[(cells["status"] == "done") & np.isfinite(cells[METRIC].astype(float))]
        server = json.loads((folder / f"{name}_server.json").read_text())
        return cls(name, folder, done, server)

    def values(self, arm: str) -> np.ndarray:
        return self.cells.loc[self.cells["arm"] == arm, METRIC].to_numpy(dtype=float)

    def arms(self) -> list[str]:
        return list(dict.fromkeys(self.cells["arm"]))


def fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def ci_text(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def welch_log_ratio(a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[float, float] | None]:
    """Ratio of the means of a and b, and the interval of exp(mean log a - mean log b) by Welch's t."""
    ratio = float(a.mean() / b.mean())
    la, lb = np.log(a), np.log(b)
    if len(la) < 2 or len(lb) < 2:
        return ratio, None
    va, vb = la.var(ddof=1) / len(la), lb.var(ddof=1) / len(lb)
    se = math.sqrt(va + vb)
    if se == 0:
        return ratio, (ratio, ratio)
    df = (va + vb) ** 2 / (va**2 / (len(la) - 1) + vb**2 / (len(lb) - 1))
    half = float(stats.t.ppf(1 - (1 - LEVEL) / 2, df)) * se
    centre = float(la.mean() - lb.mean())
    return ratio, (math.exp(centre - half), math.exp(centre + half))


def paired_log_ratio(engine: Engine, arm: str) -> tuple[float, tuple[float, float] | None]:
    """Per repeat, arm / sequential; the geometric mean and its t-interval."""
    cells = engine.cells.set_index(["repeat", "arm"])[METRIC]
    repeats = [r for r in engine.cells["repeat"].unique() if (r, arm) in cells and (r, BASELINE_ARM) in cells]
    logs = np.log([cells[(r, arm)] / cells[(r, BASELINE_ARM)] for r in repeats])
    mean, _, ci = t_interval(logs, LEVEL)
    return math.exp(mean), None if ci is None else (math.exp(ci[0]), math.exp(ci[1]))


def resolved(ci: tuple[float, float] | None) -> str:
    if ci is None:
        return "under 2 repeats"
    return "resolved" if ci[0] > 1 or ci[1] < 1 else "not resolved"


def energy_table(engines: list[Engine]) -> list[str]:
    first = engines[0]
    head = ["arm"] + [f"{e.name} all-in J/request [95% CI] (repeats)" for e in engines]
    head += [f"{e.name} / {first.name} [95% CI]" for e in engines[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in first.arms():
        row = [arm]
        for e in engines:
            v = e.values(arm)
            mean, _, ci = t_interval(v, LEVEL)
            row.append(f"{fmt(mean)} {ci_text(ci)} ({len(v)})")
        for e in engines[1:]:
            ratio, ci = welch_log_ratio(e.values(arm), first.values(arm))
            row.append(f"{fmt(ratio)}x {ci_text(ci)}, {resolved(ci)}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def shaping_table(engines: list[Engine]) -> list[str]:
    head = ["arm"] + [f"{e.name}: arm / {BASELINE_ARM} [95% CI]" for e in engines]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in engines[0].arms():
        if arm == BASELINE_ARM:
            continue
        cells = []
        for e in engines:
            ratio, ci = paired_log_ratio(e, arm)
            cells.append(f"{fmt(ratio)}x {ci_text(ci)}, {resolved(ci)}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    spreads = []
    for e in engines:
        means = {arm: float(e.values(arm).mean()) for arm in e.arms()}
        low, high = min(means, key=means.__getitem__), max(means, key=means.__getitem__)
        spreads.append(
            f"{e.name}: the dearest arm ({high}, {fmt(means[high])} J) costs "
            f"{fmt(means[high] / means[low])}x the cheapest ({low}, {fmt(means[low])} J) by the means."
        )
    return [*lines, "", *[f"- {s}" for s in spreads]]


def page(engines: list[Engine]) -> str:
    intro = (Path(__file__).with_name("engines_intro.md")).read_text()
    setup = [
        f"- **{e.name}** {e.server.get('version', '(version not recorded)')}: {len(e.cells)} done cells, "
        f"{e.cells['repeat'].nunique()} repeats; its command line is in "
        f"[{e.name}/{e.name}_server.json]({e.name}/{e.name}_server.json)"
        for e in engines
    ]
    sections = [
        intro.rstrip(),
        "",
        "## Setup",
        "",
        *setup,
        "",
        "## Energy per request, per engine",
        "",
        *energy_table(engines),
        "",
        "## How much arrival shaping matters on each engine",
        "",
        *shaping_table(engines),
        "",
    ]
    return "\n".join(sections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", action="append", required=True, metavar="NAME=DIR")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    engines = []
    for spec in args.engine:
        name, _, folder = spec.partition("=")
        engines.append(Engine.load(name, Path(folder)))
    text = page(engines)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
