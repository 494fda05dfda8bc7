#!/usr/bin/env python3
"""Write the results page (README.md) of a GPU experiment from its committed folder.

Reads RESULTS/ (e.g. docs/results/arrival-shaping-h200):
  experiment/                 the experiment folder (`joulebench experiment run`): experiment.yaml,
                              cells.parquet, plans/, and experiment_summary.json from
                              `joulebench experiment report` (run that first: the page quotes it)
  machine.txt                 `experiment.sh setup`'s description of the machine
  vllm_server.json            the server record `joulebench serve vllm` wrote
and, with --h100 DIR, the earlier single-order page's arms.csv (benchmarks/gpu/analyze.py) to compare
with. Every figure on the page is computed here: the experiment's from experiment_summary.json and
the cells table (with harness.energy.repeats where the summary has no such figure), the setup from
the files above, the comparison from the H100 folder's files. No number is typed by hand, so running
this again on the same files writes the same page, byte for byte (tests/e2e/test_committed_experiment.py).

Usage: python benchmarks/gpu/experiment_page.py docs/results/arrival-shaping-h200 \
           [--h100 docs/results/arrival-shaping-h100] [--out README.md]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.energy import repeats
from harness.energy.analysis_options import AnalysisOptions
from harness.report.format import fmt_num
from harness.runfolder.experiment_files import ExperimentFolder
from traffic.plan import ArmSpec, load_plan

REPO = Path(__file__).resolve().parents[2]
ALL_IN = "j_per_request_all_in"
ATTRIBUTED = "j_per_request_attributed"
ABOVE_IDLE = "j_above_idle_per_request"
IDLE = "j_idle_per_request"


@dataclass
class Inputs:
    results: Path  # the results folder, as given (only its name is printed)
    folder: ExperimentFolder
    spec: dict[str, Any]  # experiment.yaml
    summary: dict[str, Any]  # experiment_summary.json
    cells: pd.DataFrame
    arms: list[ArmSpec]  # the plan's arms, in experiment.yaml's order
    plan_rows: pd.DataFrame
    plan_hash: str
    machine: dict[str, str]
    server: dict[str, Any]
    h100: Path | None


def load(results: Path, h100: Path | None) -> Inputs:
    folder = ExperimentFolder.open(results / "experiment")
    summary = folder.read_summary()
    if len(summary["rates"]) != 1 or summary["rates"][0]["rate"] is not None:
        raise SystemExit("experiment_page: written for one block at the arms' own rates")
    plan = load_plan(folder.plan_path(None))
    machine, server = machine_and_server(results)
    return Inputs(
        results=results,
        folder=folder,
        spec=folder.spec_data(),
        summary=summary,
        cells=folder.read_cells().sort_values("cell", kind="stable").reset_index(drop=True),
        arms=list(plan.header.arms),
        plan_rows=plan.rows,
        plan_hash=plan.header.plan_hash,
        machine=machine,
        server=server,
        h100=h100,
    )


def machine_and_server(results: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The results folder's machine.txt (`machine_info`) and vllm_server.json, as read by both pages."""
    machine = machine_info((results / "machine.txt").read_text())
    return machine, json.loads((results / "vllm_server.json").read_text())


def machine_info(text: str) -> dict[str, str]:
    """machine.txt: nvidia-smi's CSV line, lscpu's lines, the versions line, joulebench's version."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    info: dict[str, str] = {}
    header = [h.strip() for h in lines[0].split(",")]
    values = [v.strip() for v in lines[1].split(",")]
    info.update(zip(header, values, strict=True))
    for line in lines[2:]:
        if ":" in line and not line.startswith(("vllm ", "joulebench")):
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
        elif line.startswith("vllm "):
            words = line.split()
            info.update(zip(words[::2], words[1::2], strict=True))
        elif line.startswith("joulebench"):
            info["joulebench"] = line.split()[-1]
    return info


# --- numbers as text --------------------------------------------------------------------------------


def num(value: float | None, digits: int = 4) -> str:
    """A measured figure (as the experiment's report writes it: 4 significant digits)."""
    return fmt_num(value, digits=digits)


def g(value: float) -> str:
    """A setting as given (8 s, 0.05 s, 20 requests/s): no padding zeros."""
    return f"{value:g}"


def pct(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{fmt_num(100 * value, digits=digits)}%"


def signed_pct(value: float) -> str:
    return ("+" if value > 0 else "−" if value < 0 else "") + pct(abs(value))


def ci_text(ci: list[float] | None, scale: float = 1.0) -> str:
    return "-" if ci is None else f"[{num(ci[0] * scale)}, {num(ci[1] * scale)}]"


def pct_ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"[{signed_pct(ci[0])}, {signed_pct(ci[1])}]"


def level_text(level: float) -> str:
    return f"{100 * level:.3g}%"


def row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*cells: str) -> list[str]:
    return [row(*cells), "|" + "---|" * len(cells)]


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def names(items: list[str]) -> str:
    quoted = [f"`{i}`" for i in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# --- the experiment's figures -----------------------------------------------------------------------


@dataclass(frozen=True)
class Arm:
    name: str
    figures: dict[str, dict[str, Any]]
    cv: float | None
    flags: dict[str, int]
    done: int

    def mean(self, metric: str) -> float:
        fig = self.figures.get(metric)
        return math.nan if not fig or fig["mean"] is None else float(fig["mean"])

    def fig(self, metric: str) -> dict[str, Any]:
        return self.figures.get(metric) or {"mean": None, "ci": None, "resolution": None, "repeats": 0}


def arms_of(inputs: Inputs) -> dict[str, Arm]:
    block = inputs.summary["rates"][0]
    return {
        a["arm"]: Arm(a["arm"], a["figures"], a["cv"], a["flags"], a["cells"]["done"]) for a in block["arms"]
    }


def verdict_pairs(inputs: Inputs, metric: str | None = None) -> list[tuple[dict[str, Any], str]]:
    block = inputs.summary["rates"][0]
    metric = metric or inputs.summary["metric"]
    pairs = block["pairs"][metric]
    lines = block["verdict"] if metric == inputs.summary["metric"] else [""] * len(pairs)
    return list(zip(pairs, lines, strict=True))


def done_cells(inputs: Inputs) -> pd.DataFrame:
    return inputs.cells[inputs.cells["status"] == "done"]


# --- sections ---------------------------------------------------------------------------------------


def title_and_intro(inputs: Inputs) -> list[str]:
    s, cells, machine = inputs.summary, done_cells(inputs), inputs.machine
    n = per_arm_requests(inputs)
    day = str(cells["started_utc"].min())[:10]
    first = pd.Timestamp(cells["started_utc"].min())
    last_row = cells.loc[cells["started_utc"].idxmax()]
    end = pd.Timestamp(last_row["started_utc"]) + pd.Timedelta(seconds=float(last_row["duration_s"]))
    repeats_done = int(cells["repeat"].max())
    return [
        f"# Arrival shaping on an {gpu_short(machine)}: {len(inputs.arms)} arms, {repeats_done} repeats "
        f"in {s['design']['order']} order",
        "",
        f"{same_arms_as_h100(inputs)}, {n} prompts per arm and {max_tokens(inputs)} output tokens "
        f"each, sent to vLLM {inputs.server['version']} on one {machine['name']} as one "
        "`joulebench experiment` "
        f"([docs/experiments.md](../../experiments.md)): {repeats_done} repeats, each running the arms "
        f"in a fresh {s['design']['order']} order, {g(s['design']['cooldown_s'])} s of idle between "
        f"cells. {s['counts']['done']} cells (one measured run each) on {day}, from "
        f"{first:%H:%M} to {end:%H:%M} UTC. The experiment folder is [experiment/](experiment/) "
        "(its own page: `experiment/report.html`); every number on this page is computed by "
        "`benchmarks/gpu/experiment_page.py` from it and from the files named below.",
        "",
    ]


def same_arms_as_h100(inputs: Inputs) -> str:
    """'The 6 arrival schedules of the H100 page' when the arm names are that page's."""
    if inputs.h100 is not None and (inputs.h100 / "arms.csv").is_file():
        theirs = set(pd.read_csv(inputs.h100 / "arms.csv")["arm"])
        if {a.name for a in inputs.arms} <= theirs:
            link = "[the H100 page](../arrival-shaping-h100/README.md)"
            return f"The {len(inputs.arms)} arrival schedules of {link}"
    return f"{len(inputs.arms)} arrival schedules"


def gpu_short(machine: dict[str, str]) -> str:
    return machine["name"].removeprefix("NVIDIA ").split()[0]


def per_arm_requests(inputs: Inputs) -> int:
    counts = inputs.plan_rows.groupby("arm").size()
    return int(counts.iloc[0]) if counts.nunique() == 1 else int(counts.max())


def max_tokens(inputs: Inputs) -> str:
    values = sorted(set(inputs.plan_rows["max_tokens"].dropna().astype(int)))
    return "/".join(str(v) for v in values) or "the server's default"


def model_shape() -> str:
    """The model's shape as the recipe that builds it states it."""
    doc = (REPO / "benchmarks" / "gpu" / "recipe" / "build_model.py").read_text()
    found = re.search(r"Shape: (.*?\))", doc, flags=re.S)
    return " ".join(found.group(1).split()) if found else "see benchmarks/gpu/recipe/build_model.py"


def setup(inputs: Inputs) -> list[str]:
    m, server, spec, design = inputs.machine, inputs.server, inputs.spec, inputs.summary["design"]
    flags = server.get("flags", {})
    shown_flags = " ".join(
        f"`{k}`" if v is True else f"`{k} {v}`"
        for k, v in flags.items()
        if k not in ("--model", "--host", "--port")
    )
    rows = inputs.plan_rows
    tokens = rows["prompt_tokens"].dropna()
    lines = [
        "## Setup",
        "",
        f"- **GPU and server** (`machine.txt`, `vllm_server.json`): {m['name']} (driver "
        f"{m['driver_version']}, power limit {m['power.limit [W]']}, {m['memory.total [MiB]']}) on a "
        f"{m['CPU(s)']}-core {m['Model name']} host; vLLM {server['version']} (torch {m['torch']}) "
        f"started by `joulebench serve vllm` ({server['launcher']}, healthy after "
        f"{num(server['healthy_after_s'], 3)} s) with {shown_flags}. The model is random weights in "
        f"{model_shape()} (`benchmarks/gpu/recipe/build_model.py`), served as "
        f"`{flags.get('--served-model-name', '?')}`; joulebench {m['joulebench']}.",
        f"- **Plan** (`experiment/plans/own-rates.parquet`, hash `{inputs.plan_hash[:16]}`): "
        f"{per_arm_requests(inputs)} prompts from `{Path(str(spec['plan']['prompts'])).name}`, the same "
        f"ones in every arm and every repeat (mean {num(float(tokens.mean()), 3)} prompt tokens by the "
        f"model's tokenizer), {max_tokens(inputs)} output tokens each"
        + (" (`ignore_eos`)" if bool(rows["ignore_eos"].all()) else "")
        + ". Each cell sends its arm's rows of this one plan, so every repeat replays the same prompts "
        "at the same offered times.",
        "",
        *header("arm", "schedule as written", "resolved", "planned mean rate (req/s)", "last offset (s)"),
    ]
    for arm in inputs.arms:
        mine = rows[rows["arm"] == arm.name]
        offsets = mine["offset_s"].dropna()
        resolved = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(arm.params.items()))
        lines.append(
            row(
                f"`{arm.name}`",
                f"`{arm.spec}`",
                ("closed loop, " if arm.closed_loop else "") + resolved,
                "-" if arm.mean_rate is None else g(arm.mean_rate),
                "-" if offsets.empty else f"{float(offsets.max()):.4g}",
            )
        )
    per_pair = verdict_pairs(inputs)[0][0]["level"] if verdict_pairs(inputs) else design["level"]
    m_pairs = len(verdict_pairs(inputs))
    correction = (
        f"simultaneous, Bonferroni over the {m_pairs} pairs (each pair at {level_text(per_pair)})"
        if design["multiplicity"] == "bonferroni"
        else "per pair, uncorrected"
    )
    half = float(design["cooldown_s"]) / 2
    power = spec.get("power") or {}
    sources = [k for k in ("sidecar", "prometheus", "dcgm") if power.get(k)]
    lines += [
        "",
        f"- **Design** (`experiment/experiment.yaml`): {design['repeats']} repeats; in each, the arms "
        f"in a {design['order']} order (seed {design['seed']}: a repeat's order depends only on the seed "
        f"and its number); {g(design['cooldown_s'])} s of idle between cells, recorded as each "
        f"cell's idle power ({g(half)} s before and {g(half)} s after it). Verdicts on "
        f"{inputs.summary['metric_label']} ({inputs.summary['metric']}), {level_text(design['level'])} "
        f"{correction}; "
        f"energy split among requests in flight by `{design['method']}`.",
        f"- **Power**: {' and '.join(sources)} (the join uses the {power.get('primary') or sources[0]}, "
        "the other is a cross-check in every cell's manifest); the NVML sidecar and a real Prometheus "
        "started by `benchmarks/gpu/experiment.sh start`.",
        "",
    ]
    return lines


def commands(inputs: Inputs) -> list[str]:
    results = f"docs/results/{inputs.results.resolve().name}"
    experiment_id = str(inputs.cells["experiment_id"].iloc[0])
    return [
        "## Commands",
        "",
        "On a CPU machine with PyPI, `bash benchmarks/gpu/prepare.sh` packs vLLM, the wheels, Prometheus "
        "and the data; then on the GPU machine, one call each (the servers and the experiment outlive a "
        "call; `experiment` starts `joulebench experiment run benchmarks/gpu/arrival-shaping-h200.yaml` "
        "in the background with this machine's URLs and paths as `--target`/`--set` overrides, and "
        "`wait` follows it):",
        "",
        "```bash",
        "bash benchmarks/gpu/experiment.sh stash .chunks/c00",
        "bash benchmarks/gpu/experiment.sh stash .chunks/c01",
        "bash benchmarks/gpu/experiment.sh stash .gpu/deb .gpu/data .gpu/whl && "
        "bash benchmarks/gpu/experiment.sh setup start experiment wait 420",
        "bash benchmarks/gpu/experiment.sh wait 540 collect stop",
        "```",
        "",
        f"Back here, `results.tgz`'s `experiments/{experiment_id}` became `experiment/` without each "
        "run's `requests.jsonl`, `power_samples.jsonl` and `report.html` (`requests.parquet` and "
        "`power.parquet` hold the first two in compact form; `joulebench report "
        "experiment/runs/<cell>` rebuilds the third), its `experiment.log`, `serve.log` and "
        "`sidecar.log` went to `logs/`, `vllm/server.json` to `vllm_server.json`, and then:",
        "",
        "```bash",
        f"joulebench experiment report {results}/experiment",
        f"python benchmarks/gpu/experiment_page.py {results} --h100 docs/results/arrival-shaping-h100",
        "```",
        "",
        "After a change to the analysis, `bash benchmarks/gpu/rebuild_committed.sh` reports every committed "
        "run folder again (`joulebench report`), then each experiment (`joulebench experiment report "
        "--refigure`) and the pages.",
        "",
    ]


def arm_table(inputs: Inputs) -> list[str]:
    arms = arms_of(inputs)
    level = level_text(inputs.summary["level"])
    lines = [
        "## Per arm",
        "",
        *header(
            "arm",
            "cells",
            f"all-in J/req [{level} CI]",
            f"attributed J/req [{level} CI]",
            "idle J/req",
            "above-idle J/req",
            "CV between repeats",
            "counter resolution J/req",
            "TTFT p50 ms",
            "E2E p50 ms",
            "flags (cells)",
        ),
    ]
    for name, arm in arms.items():
        all_in, attributed = arm.fig(ALL_IN), arm.fig(ATTRIBUTED)
        lines.append(
            row(
                f"`{name}`",
                arm.done,
                f"{num(all_in['mean'])} {ci_text(all_in['ci'])}",
                f"{num(attributed['mean'])} {ci_text(attributed['ci'])}",
                num(arm.mean(IDLE)),
                num(arm.mean(ABOVE_IDLE)),
                pct(arm.cv),
                num(all_in["resolution"], 3),
                num(arm.mean("ttft_p50_s") * 1e3),
                num(arm.mean("e2e_p50_s") * 1e3),
                ", ".join(f"`{k}` ({v})" for k, v in arm.flags.items()) or "-",
            )
        )
    images = sorted(p.name for p in inputs.folder.path.glob("*.png"))
    lines += [
        "",
        "Means over the repeats (one value per cell). All-in = the arm window's counter energy over its "
        "successful requests (idle gaps included); attributed = the mean of the requests' own shares; "
        "idle + above-idle = all-in. The intervals are Student-t over repeats, widened on each side by "
        "the counter-resolution bound (two counter updates at the arm's mean power, per request); the "
        f"CV is of {inputs.summary['metric_label']}. TTFT and E2E are the cells' medians, averaged.",
        "",
        *[f"![{name}](experiment/{name})" for name in images],
        "",
    ]
    return lines


def repeat_table(inputs: Inputs) -> list[str]:
    cells = done_cells(inputs)
    width = int(cells["position"].max()) + 1
    lines = [
        "## The order each repeat ran in",
        "",
        *header("repeat", "first cell started (UTC)", *[ordinal(p + 1) for p in range(width)]),
    ]
    for repeat, mine in cells.groupby("repeat", sort=True):
        mine = mine.sort_values("position")
        started = pd.Timestamp(mine["started_utc"].min())
        lines.append(
            row(
                int(repeat),
                f"{started:%H:%M:%S}",
                *[f"`{r['arm']}` {num(r[inputs.summary['metric']])}" for _, r in mine.iterrows()],
            )
        )
    lines += ["", f"Each entry: the arm and its {inputs.summary['metric_label']}.", ""]
    return lines


def differences(inputs: Inputs) -> list[str]:
    s = inputs.summary
    pairs = verdict_pairs(inputs)
    yes = [line for p, line in pairs if p["distinguishable"]]
    no = [line for p, line in pairs if not p["distinguishable"]]
    lines = [
        "## Which arms differ",
        "",
        f"Paired by repeat (the unit of replication: one value per cell), {level_text(s['level'])} "
        + ("simultaneous over the pairs (Bonferroni)" if s["multiplicity"] == "bonferroni" else "per pair")
        + f"; a pair is called only when its interval excludes zero. Widest interval: "
        f"±{num(s['rates'][0]['widest_half_width'])} J per request.",
        "",
        f"**Distinguishable ({len(yes)} of {len(pairs)} pairs, {s['metric_label']}):**",
        "",
        *[f"- {line}" for line in yes],
        "",
        f"**Not distinguishable ({len(no)} of {len(pairs)}):**",
        "",
        *([f"- {line}" for line in no] or ["- none"]),
        "",
    ]
    attributed = {(p["a"], p["b"]): p for p, _ in verdict_pairs(inputs, ATTRIBUTED)}
    changed = []
    for p, _ in pairs:
        other = attributed.get((p["a"], p["b"]))
        if other is not None and other["distinguishable"] != p["distinguishable"]:
            state = "distinguishable" if other["distinguishable"] else "not distinguishable"
            changed.append(
                f"`{p['a']}` vs `{p['b']}` is {state} on attributed energy "
                f"(a − b {num(other['mean'])} J, CI {ci_text(other['ci'])})"
            )
    if s["metric"] != ATTRIBUTED:
        lines += [
            "On attributed energy (the requests' own shares, idle gaps left out) the verdicts are "
            + ("the same for every pair." if not changed else "the same except: " + "; ".join(changed) + "."),
            "",
        ]
    return lines


def most_there(cells: pd.DataFrame, position: int) -> str:
    """Which arm held a position most often: in a random design the positions are not balanced."""
    there = Counter(cells.loc[cells["position"] == position, "arm"].astype(str))
    arm, k = there.most_common(1)[0]
    return f"`{arm}` sat there in {k} of {sum(there.values())} repeats"


def order_effects(inputs: Inputs) -> tuple[list[str], str]:
    s = inputs.summary
    positions = s["positions"]
    cells = done_cells(inputs)
    level = level_text(s["level"])
    lines = [
        "## Order effects",
        "",
        f"Each done cell's residual: its {s['metric_label']} minus its arm's mean over the repeats, as a "
        "share of that mean, pooled by the arm's position in its repeat "
        f"(`experiment_summary.json` `positions`; {level} t-intervals).",
        "",
        *header("position", "cells", "arms there", "mean residual", f"{level} CI"),
    ]
    for p in positions:
        there = Counter(cells.loc[cells["position"] == p["position"], "arm"].astype(str))
        arms_there = ", ".join(f"`{a}`" + (f" ×{k}" if k > 1 else "") for a, k in there.most_common())
        lines.append(
            row(ordinal(p["position"] + 1), p["cells"], arms_there, signed_pct(p["mean"]), pct_ci(p["ci"]))
        )
    excluding = [p for p in positions if p["ci"] is not None and (p["ci"][0] > 0 or p["ci"][1] < 0)]
    expected = len(positions) * (1 - s["level"])
    largest = max(positions, key=lambda p: abs(p["mean"])) if positions else None
    cvs = [a.cv for a in arms_of(inputs).values() if a.cv is not None]
    if excluding:
        which = "; ".join(
            f"the {ordinal(p['position'] + 1)} ({signed_pct(p['mean'])}, CI {pct_ci(p['ci'])}; "
            f"{most_there(cells, p['position'])})"
            for p in excluding
        )
        verb = "excludes" if len(excluding) == 1 else "exclude"
        verdict = f"{len(excluding)} of {len(positions)} positions' intervals {verb} zero: {which}"
    else:
        verdict = f"no position's interval excludes zero (of {len(positions)})"
    chance = (
        f"with {len(positions)} intervals at {level} each, {num(expected, 2)} would exclude zero by chance "
        "on average if the order had no effect at all"
    )
    sentence = (
        f"{verdict[0].upper() + verdict[1:]}. {chance[0].upper() + chance[1:]}, and the residuals of one "
        "arm sum to zero, so these intervals are a diagnostic rather than a test. "
    )
    verdict = f"{verdict}; {chance}"
    if largest is not None:
        sentence += (
            f"The largest mean residual is {signed_pct(largest['mean'])} (the "
            f"{ordinal(largest['position'] + 1)} position), against between-repeat CVs of "
            f"{pct(min(cvs))} to {pct(max(cvs))} across the arms."
        )
    lines += ["", sentence, ""]
    return lines, verdict


# --- the H100 page's single-order runs -------------------------------------------------------------


@dataclass
class H100:
    arms: pd.DataFrame  # per arm: mean, cv, attributed, e2e_p50, requests, rank
    order: list[str]  # the arms in the order every run sent them
    runs: int
    gpu: str
    idle_s: float | None
    pairs: list[repeats.PairDifference]


def load_h100(path: Path) -> H100:
    rows = pd.read_csv(path / "arms.csv")
    runs = list(dict.fromkeys(rows["run"]))
    order = list(dict.fromkeys(rows["arm"]))
    grouped = rows.groupby("arm", sort=False)
    arms = pd.DataFrame(
        {
            "mean": grouped["all_in_j"].mean(),
            "cv": grouped["all_in_j"].std(ddof=1) / grouped["all_in_j"].mean(),
            "attributed": grouped["j_mean"].mean(),
            "e2e_p50": grouped["e2e_p50"].mean(),
            "ttft_p50": grouped["ttft_p50"].mean(),
            "requests": grouped["requests_ok"].max(),
        }
    ).loc[order]
    arms["rank"] = arms["mean"].rank().astype(int)
    # The experiment's own statistics over the H100 runs: one run = one repeat, arms paired by run.
    cells = pd.DataFrame(
        {
            "repeat": rows["run"].map({r: i + 1 for i, r in enumerate(runs)}),
            "rate": np.nan,
            "arm": rows["arm"],
            "status": "done",
            ALL_IN: rows["all_in_j"],
        }
    )
    pairs = repeats.pair_differences(cells, ALL_IN, 0.95, "bonferroni")
    machine = machine_info((path / "machine.txt").read_text())
    idle = [
        json.loads(p.read_text())["idle"].get("pre_s") for p in sorted((path / "raw").glob("*/summary.json"))
    ]
    idle_s = float(np.mean([i for i in idle if i])) if any(idle) else None
    return H100(arms, order, len(runs), machine["name"], idle_s, pairs)


def h100_section(inputs: Inputs) -> tuple[list[str], list[str]]:
    """The comparison section and its reading notes."""
    if inputs.h100 is None or not (inputs.h100 / "arms.csv").is_file():
        return [], []
    h = load_h100(inputs.h100)
    ours = arms_of(inputs)
    common = [a for a in ours if a in h.arms.index]
    here = pd.Series({a: ours[a].mean(ALL_IN) for a in common})
    here_rank = here.rank().astype(int)
    n_here = per_arm_requests(inputs)
    n_there = int(h.arms["requests"].max())
    lines = [
        f"## Against the H100 page (one order, {h.runs} runs)",
        "",
        f"[arrival-shaping-h100](../arrival-shaping-h100/README.md) ran the same {len(common)} "
        f"schedules on an {h.gpu} in {h.runs} runs of one plan each, every run sending the arms in one order "
        f"({' → '.join(f'`{a}`' for a in h.order)}), with {n_there} requests per arm"
        + (f" and {h.idle_s:.0f} s of idle before and after each run" if h.idle_s else "")
        + f" (`arms.csv`, `raw/*/summary.json`). Here: {n_here} requests per arm, each arm its own run, "
        f"{g(float(inputs.summary['design']['cooldown_s']) / 2)} s of idle on each side. So the "
        "GPUs, the hosts, the window lengths and, for an arm that sends all its requests at once, the "
        "burst itself differ; the per-arm ratio below mixes all of that.",
        "",
        *header(
            "arm",
            f"H100 all-in J/req (mean of {h.runs})",
            "H100 CV",
            "H100 rank",
            f"{gpu_short(inputs.machine)} all-in J/req",
            f"{gpu_short(inputs.machine)} CV",
            f"{gpu_short(inputs.machine)} rank",
            f"{gpu_short(inputs.machine)} / H100",
            "E2E p50 ms H100 / here",
        ),
    ]
    for a in common:
        there = h.arms.loc[a]
        lines.append(
            row(
                f"`{a}`",
                num(float(there["mean"])),
                pct(float(there["cv"])),
                int(there["rank"]),
                num(float(here[a])),
                pct(ours[a].cv),
                int(here_rank[a]),
                num(float(here[a] / there["mean"]), 3),
                f"{num(float(there['e2e_p50']) * 1e3)} / {num(ours[a].mean('e2e_p50_s') * 1e3)}",
            )
        )
    moved = [a for a in common if int(h.arms.loc[a, "rank"]) != int(here_rank[a])]
    ranking = ranking_text(moved, h, here_rank, inputs)
    h_yes = {(p.a, p.b) for p in h.pairs if p.winner is not None}
    h_yes |= {(b, a) for a, b in h_yes}
    agree, newly, lost = [], [], []
    for p, _ in verdict_pairs(inputs):
        key = (p["a"], p["b"])
        if key[0] not in h.arms.index or key[1] not in h.arms.index:
            continue
        was = key in h_yes
        if p["distinguishable"] == was:
            agree.append(key)
        elif p["distinguishable"]:
            newly.append(key)
        else:
            lost.append(key)
    n_h = sum(p.winner is not None for p in h.pairs)
    lines += [
        "",
        f"Ranking of the arms by all-in J/request: {ranking}. "
        f"The experiment's statistics applied to the H100 runs (each run one repeat, arms paired by run, "
        f"Bonferroni over {len(h.pairs)} pairs): {n_h} of {len(h.pairs)} pairs distinguishable there, "
        f"{sum(p['distinguishable'] for p, _ in verdict_pairs(inputs))} here. "
        + (
            "Distinguishable here, not with the H100's runs: "
            + "; ".join(f"`{a}` vs `{b}`" for a, b in newly)
            + ". "
            if newly
            else ""
        )
        + (
            "Distinguishable with the H100's runs, not here: "
            + "; ".join(f"`{a}` vs `{b}`" for a, b in lost)
            + ". "
            if lost
            else ""
        )
        + "With the same arm in the same place in every H100 run, an order effect there would be part of "
        "that arm's figure; here each repeat draws a new order and the order effects are measured (above).",
        "",
    ]
    notes = [
        f"**Against the H100 page**: ranking by all-in energy, {ranking}; with the experiment's paired "
        f"statistics, {n_h} of {len(h.pairs)} "
        f"pairs are distinguishable from the H100's {h.runs} single-order runs and "
        f"{sum(p['distinguishable'] for p, _ in verdict_pairs(inputs))} from these "
        f"{int(done_cells(inputs)['repeat'].max())} repeats"
        + (" (newly: " + ", ".join(f"`{a}` vs `{b}`" for a, b in newly) + ")" if newly else "")
        + "."
    ]
    return lines, notes


def ranking_text(moved: list[str], h: H100, here_rank: pd.Series, inputs: Inputs) -> str:
    """Which arms rank differently on the two GPUs, and whether those pairs are distinguishable."""
    if not moved:
        return "the same on both GPUs"
    places = ", ".join(f"`{a}` {int(h.arms.loc[a, 'rank'])} → {int(here_rank[a])}" for a in moved)
    said = []
    for i, a in enumerate(moved):
        for b in moved[i + 1 :]:
            here = next((p for p, _ in verdict_pairs(inputs) if {p["a"], p["b"]} == {a, b}), None)
            there = next((p for p in h.pairs if {p.a, p.b} == {a, b}), None)
            if here is not None and there is not None:
                state = {True: "distinguishable", False: "not distinguishable"}
                said.append(
                    f"`{a}` vs `{b}` is {state[bool(here['distinguishable'])]} here and "
                    f"{state[there.winner is not None]} with the H100's runs"
                )
    return f"the same except {places} (H100 rank → here)" + (f": {'; '.join(said)}" if said else "")


# --- the reading notes ------------------------------------------------------------------------------


def reading(inputs: Inputs, order_verdict: str, h100_notes: list[str]) -> list[str]:
    s = inputs.summary
    arms = arms_of(inputs)
    metric = s["metric"]
    valued = {a: arm for a, arm in arms.items() if math.isfinite(arm.mean(metric))}
    cheap = min(valued, key=lambda a: valued[a].mean(metric))
    dear = max(valued, key=lambda a: valued[a].mean(metric))
    notes = [
        f"**`{cheap}` costs least and `{dear}` most**: {num(valued[cheap].mean(metric))} against "
        f"{num(valued[dear].mean(metric))} J per request ({s['metric_label']}), "
        f"{num(valued[dear].mean(metric) / valued[cheap].mean(metric), 3)} times as much for the same "
        f"prompts and outputs. {sum(p['distinguishable'] for p, _ in verdict_pairs(inputs))} of the "
        f"{len(verdict_pairs(inputs))} pairs are distinguishable (below).",
    ]
    notes += idle_note(inputs, arms)
    notes += equal_rate_notes(inputs, arms)
    fastest = min(valued, key=lambda a: valued[a].mean("ttft_p50_s"))
    if fastest != cheap:
        notes.append(
            f"**Latency is the price**: `{cheap}`'s median time to first token is "
            f"{num(valued[cheap].mean('ttft_p50_s') * 1e3)} ms and its median request takes "
            f"{num(valued[cheap].mean('e2e_p50_s') * 1e3)} ms, against "
            f"{num(valued[fastest].mean('ttft_p50_s') * 1e3)} ms and "
            f"{num(valued[fastest].mean('e2e_p50_s') * 1e3)} ms for `{fastest}` (the lowest TTFT)."
        )
    notes += resolution_notes(inputs, valued)
    notes.append(f"**Order**: {order_verdict} (section Order effects).")
    notes += h100_notes
    return ["## Reading it", "", *[f"- {n}" for n in notes], ""]


def idle_note(inputs: Inputs, arms: dict[str, Arm]) -> list[str]:
    """The arm whose all-in figure is most the idle floor, against the closed-loop arm above idle."""
    shares = {a: arm.mean(IDLE) / arm.mean(ALL_IN) for a, arm in arms.items() if arm.mean(ALL_IN) > 0}
    shares = {a: v for a, v in shares.items() if math.isfinite(v)}
    if not shares:
        return []
    top = max(shares, key=lambda a: shares[a])
    idle_w = float(done_cells(inputs)["idle_power_w"].mean())
    text = (
        f"**The idle floor is most of `{top}`'s cost**: {num(arms[top].mean(IDLE))} of its "
        f"{num(arms[top].mean(ALL_IN))} J per request all-in ({pct(shares[top])}) is the arm window's "
        f"energy up to idle power ({num(idle_w)} W averaged over the cells), paid during its requests "
        f"and in the gaps between them; that share is {pct(min(shares.values()))} for "
        f"`{min(shares, key=lambda a: shares[a])}`."
    )
    closed = [a.name for a in inputs.arms if a.closed_loop and a.name in arms and a.name != top]
    if closed:
        other = closed[0]
        level, multiplicity = inputs.summary["level"], inputs.summary["multiplicity"]
        above = repeats.pair_differences(done_cells(inputs), ABOVE_IDLE, level, multiplicity)
        pair = next((p for p in above if {p.a, p.b} == {top, other}), None)
        verdict = ""
        if pair is not None and pair.ci is not None:
            sign = 1 if pair.a == top else -1
            lo, hi = sorted((sign * pair.ci[0], sign * pair.ci[1]))
            called = "distinguishable" if pair.winner else "not distinguishable"
            verdict = (
                f" ({top} − {other}: {num(sign * pair.mean)} J, {level_text(pair.level)} CI "
                f"[{num(lo)}, {num(hi)}], {called}; `harness.energy.repeats.pair_differences` on the cells)"
            )
        text += (
            f" Above idle it costs {num(arms[top].mean(ABOVE_IDLE))} J per request, against "
            f"{num(arms[other].mean(ABOVE_IDLE))} J for `{other}`{verdict}."
        )
    return [text]


def equal_rate_notes(inputs: Inputs, arms: dict[str, Arm]) -> list[str]:
    """Arms planned at the same mean rate: the comparison the shaping question is about."""
    groups: dict[float, list[str]] = {}
    for arm in inputs.arms:
        if arm.mean_rate is not None and arm.name in arms:
            groups.setdefault(float(arm.mean_rate), []).append(arm.name)
    notes = []
    pairs = verdict_pairs(inputs)
    for rate, members in groups.items():
        if len(members) < 2:
            continue
        said = []
        for p, _ in pairs:
            if p["a"] in members and p["b"] in members:
                if p["distinguishable"]:
                    loser = p["b"] if p["winner"] == p["a"] else p["a"]
                    said.append(
                        f"`{p['winner']}` is lower than `{loser}` by {num(abs(p['mean']))} J "
                        f"({pct(abs(p['mean']) / arms[loser].mean(inputs.summary['metric']))} less)"
                    )
                else:
                    said.append(
                        f"`{p['a']}` and `{p['b']}` are not distinguishable (CI {ci_text(p['ci'])} J)"
                    )
        cvs = ", ".join(f"`{m}` {pct(arms[m].cv)}" for m in members)
        notes.append(
            f"**At the same planned {g(rate)} requests/s** ({names(members)}): " + "; ".join(said) + ". "
            f"Between-repeat CVs: {cvs}."
        )
    return notes


def resolution_notes(inputs: Inputs, arms: dict[str, Arm]) -> list[str]:
    """The arm whose figure the counter resolves worst, and what the flags say."""
    metric = inputs.summary["metric"]
    cells = done_cells(inputs)
    shares = {
        a: arm.fig(metric)["resolution"] / arm.mean(metric)
        for a, arm in arms.items()
        if arm.fig(metric).get("resolution") and arm.mean(metric) > 0
    }
    notes = []
    if shares:
        worst = max(shares, key=lambda a: shares[a])
        duration = float(cells.loc[cells["arm"] == worst, "duration_s"].mean())
        fig = arms[worst].fig(metric)
        notes.append(
            f"**`{worst}` is the hardest to measure**: its window lasts {num(duration, 3)} s on average, "
            f"so the counter-resolution bound is {num(fig['resolution'], 3)} J per request, "
            f"{pct(shares[worst])} of its mean; its interval {ci_text(fig['ci'])} carries that bound on "
            f"each side, and its CV between repeats is {pct(arms[worst].cv)}."
        )
    flagged = Counter(
        f.strip() for text in cells["flags"].fillna("") for f in str(text).split(",") if f.strip()
    )
    if flagged:
        minimum = AnalysisOptions().min_window_s
        half = float(inputs.summary["design"]["cooldown_s"]) / 2
        short = sorted(set(cells.loc[cells["duration_s"] < minimum, "arm"].astype(str)))
        listed = ", ".join(f"`{k}` on {v} of {len(cells)} cells" for k, v in sorted(flagged.items()))
        text = f"**Flags**: {listed}."
        if "short_window" in flagged and half < minimum:
            text += (
                f" Each cell's idle windows are half the cool-down, {g(half)} s, shorter than the "
                f"{g(minimum)} s the join asks of a window measured by a counter that updates every "
                f"{g(AnalysisOptions().counter_period_s)} s (`harness/energy/analysis_options.py`), so "
                "every cell's idle power is flagged as uncertain"
                + (
                    f"; the arm windows under {g(minimum)} s are flagged too ({names(short)})"
                    if short
                    else ""
                )
                + "."
            )
        notes.append(text)
    return notes


# --- main -------------------------------------------------------------------------------------------


def page(inputs: Inputs) -> str:
    order_lines, order_verdict = order_effects(inputs)
    h100_lines, h100_notes = h100_section(inputs)
    sections = [
        *title_and_intro(inputs),
        *reading(inputs, order_verdict, h100_notes),
        *setup(inputs),
        *commands(inputs),
        *arm_table(inputs),
        *repeat_table(inputs),
        *differences(inputs),
        *order_lines,
        *h100_lines,
    ]
    return page_text(inputs.results, sections)


def page_text(results: Path, sections: list[str]) -> str:
    """A results page: its sections, then the machine as `experiment.sh setup` described it."""
    machine = (results / "machine.txt").read_text().strip()
    lines = [*sections, "Machine (`machine.txt`, from `experiment.sh setup`):", "", "```", machine, "```"]
    return "\n".join(lines) + "\n"


def page_cli(
    doc: str,
    holding: str,
    build: Callable[[argparse.Namespace], str],
    options: Sequence[tuple[str, str]] = (),
) -> None:
    """A page script's command line, `RESULTS [options] [--out README.md]`: writes build(args) to --out,
    by default RESULTS/README.md. `holding` says what RESULTS holds; `options` are (flag, help) of the
    script's own folder options."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("results", type=Path, help=f"the results folder holding {holding}")
    for flag, text in options:
        ap.add_argument(flag, type=Path, help=text)
    ap.add_argument("--out", type=Path, help="where to write the page (default: RESULTS/README.md)")
    args = ap.parse_args()
    out = args.out or args.results / "README.md"
    out.write_text(build(args), encoding="utf-8")
    print(out)


def main() -> None:
    page_cli(
        __doc__ or "",
        "experiment/, machine.txt, ...",
        lambda args: page(load(args.results, args.h100)),
        [("--h100", "the single-order results folder to compare with (arms.csv)")],
    )


if __name__ == "__main__":
    main()
