#!/usr/bin/env python3
"""Write the results page (README.md) of the shaping-policy experiment (issue 15) from its folders.

Reads RESULTS/ (docs/results/shaping-h200):
  experiment/          the GPU experiment folder (`joulebench experiment run
                       benchmarks/gpu/shaping-h200.yaml`), with experiment_summary.json from
                       `joulebench experiment report` (run that first)
  mock/                the same file run on the embedded mock (`--target embedded`): experiment.yaml,
                       cells.parquet and experiment_summary.json (its run folders are not kept)
  machine.txt          `experiment.sh setup`'s description of the machine
  vllm_server.json     the server record `joulebench serve vllm` wrote
Every figure on the page is computed here from those files (the summaries, the cells tables, the plan);
running it again on the same files writes the same page, byte for byte
(tests/e2e/test_committed_experiment.py).

Usage: python benchmarks/gpu/shaping_page.py docs/results/shaping-h200 [--out README.md]
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
from experiment_page import (
    ABOVE_IDLE,
    ALL_IN,
    ATTRIBUTED,
    REPO,
    ci_text,
    g,
    header,
    level_text,
    machine_and_server,
    model_shape,
    names,
    num,
    page_cli,
    page_text,
    pct,
    row,
)

from foundation.errors import InputError
from harness.mock.profile import DEFAULT_PROFILE
from harness.report.experiment_frontier import paired_difference
from harness.runfolder.experiment_files import ExperimentFolder
from traffic.plan import load_plan

BASELINE = "passthrough"


@dataclass
class Side:
    """One experiment (the GPU's or the mock's): its summary and cells, per rate."""

    folder: ExperimentFolder
    summary: dict[str, Any]
    cells: pd.DataFrame

    @classmethod
    def open(cls, path: Path) -> Side:
        folder = ExperimentFolder.open(path)
        cells = folder.read_cells().sort_values("cell", kind="stable").reset_index(drop=True)
        return cls(folder, folder.read_summary(), cells)

    def block(self, rate: float) -> dict[str, Any]:
        return next(b for b in self.summary["rates"] if b["rate"] == rate)

    def arms(self, rate: float) -> dict[str, dict[str, Any]]:
        """label (the policy's name) -> the arm's record."""
        return {a["label"]: a for a in self.block(rate)["arms"]}

    def mean(self, rate: float, label: str, metric: str) -> float:
        fig = self.arms(rate)[label]["figures"].get(metric) or {}
        return math.nan if fig.get("mean") is None else float(fig["mean"])

    def pair(self, rate: float, metric: str, a: str, b: str) -> dict[str, Any]:
        """Labels a and b's paired difference a − b (`paired_difference`: `mean`, `ci`, `level`), and
        `distinguishable` as the summary says it of the pair (the same either way round)."""
        full = {x["label"]: x["arm"] for x in self.block(rate)["arms"]}
        pairs = self.block(rate)["pairs"][metric]
        said = [p["distinguishable"] for p in pairs if {p["a"], p["b"]} == {full[a], full[b]}]
        if not said:
            raise KeyError((rate, metric, a, b))
        return {**paired_difference(pairs, full[a], full[b]), "distinguishable": said[0]}


@dataclass
class Inputs:
    results: Path
    gpu: Side
    mock: Side
    spec: dict[str, Any]
    machine: dict[str, str]
    server: dict[str, Any]
    rates: list[float]
    labels: list[str]  # policies in the experiment's order


def load(results: Path) -> Inputs:
    try:
        gpu, mock = Side.open(results / "experiment"), Side.open(results / "mock")
    except InputError as exc:
        raise SystemExit(f"shaping_page: {exc}") from None
    rates = [float(b["rate"]) for b in gpu.summary["rates"]]
    labels = [a["label"] for a in gpu.block(rates[0])["arms"]]
    if [float(b["rate"]) for b in mock.summary["rates"]] != rates or list(mock.arms(rates[0])) != labels:
        raise SystemExit("shaping_page: the mock's experiment is not the GPU's (rates or policies differ)")
    if BASELINE not in labels or not gpu.summary.get("shaped"):
        raise SystemExit(f"shaping_page: written for a shaped experiment with a {BASELINE} arm")
    machine, server = machine_and_server(results)
    return Inputs(
        results=results,
        gpu=gpu,
        mock=mock,
        spec=gpu.folder.spec_data(),
        machine=machine,
        server=server,
        rates=rates,
        labels=labels,
    )


def req_s(rate: float) -> str:
    return f"{g(rate)} requests/s"


def fig_ci(arm: dict[str, Any], metric: str, scale: float = 1.0) -> str:
    fig = arm["figures"].get(metric) or {}
    if fig.get("mean") is None:
        return "-"
    return f"{num(fig['mean'] * scale)} {ci_text(fig.get('ci'), scale)}"


def mean_of(arm: dict[str, Any], metric: str, scale: float = 1.0) -> str:
    fig = arm["figures"].get(metric) or {}
    return "-" if fig.get("mean") is None else num(fig["mean"] * scale)


def ranks(values: dict[str, float]) -> dict[str, int | str]:
    """1 = lowest; ties share the lower rank; a policy without a figure (every cell left out) has none."""
    ordered = sorted(v for v in values.values() if math.isfinite(v))
    return {k: ordered.index(v) + 1 if math.isfinite(v) else "-" for k, v in values.items()}


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    keys = list(a)
    return float(pd.Series([a[k] for k in keys]).corr(pd.Series([b[k] for k in keys]), method="spearman"))


# --- sections ---------------------------------------------------------------------------------------


def title_and_intro(inputs: Inputs) -> list[str]:
    cells = inputs.gpu.cells[inputs.gpu.cells["status"] == "done"]
    s, plan = inputs.gpu.summary, inputs.spec["plan"]
    first, last = pd.Timestamp(cells["started_utc"].min()), pd.Timestamp(cells["started_utc"].max())
    return [
        f"# Arrival-shaping policies on an {inputs.machine['name'].removeprefix('NVIDIA ')}: "
        f"{len(inputs.labels)} policies at {len(inputs.rates)} offered loads, "
        f"{s['design']['repeats']} repeats in random order",
        "",
        f"Users arrive as a Poisson process at {' and '.join(req_s(r) for r in inputs.rates)}; a shaping "
        "policy between them and the server decides when each request is released "
        "([docs/shaping.md](../../shaping.md)); users pay the hold. "
        f"{len(inputs.labels)} policies, {plan['n']} requests per cell ({plan['max_tokens']} output tokens "
        f"each, `ignore_eos`: random weights would stop anywhere), against vLLM {inputs.server['version']} "
        f"on one {inputs.machine['name']}, as one `joulebench experiment` "
        f"([docs/experiments.md](../../experiments.md)): {len(cells)} cells (one measured run each of a "
        f"repeat × rate × policy) on {first:%Y-%m-%d}, from {first:%H:%M} to {last:%H:%M} UTC. The same "
        "file ran on the embedded mock for the comparison below. The folders are "
        "[experiment/](experiment/) (its own page: `experiment/report.html`) and [mock/](mock/); every "
        "number on this page is computed by `benchmarks/gpu/shaping_page.py` from them.",
        "",
    ]


def correction(s: dict[str, Any]) -> str:
    return "Bonferroni over the pairs at a rate" if s["multiplicity"] == "bonferroni" else "uncorrected"


def reading(inputs: Inputs) -> list[str]:
    gpu, s = inputs.gpu, inputs.gpu.summary
    metric, unit = s["metric"], f"J per request ({s['metric_label'].removesuffix(' J/request')})"
    lines = ["## Reading it", ""]
    for rate in inputs.rates:
        arms = gpu.arms(rate)
        base = arms[BASELINE]
        cheapest = min(inputs.labels, key=lambda label: gpu.mean(rate, label, metric))
        if cheapest == BASELINE:
            lines.append(f"- **At {req_s(rate)}, `{BASELINE}` costs least** by the means: no policy saves.")
            continue
        c = arms[cheapest]
        p = gpu.pair(rate, metric, BASELINE, cheapest)
        saved = 1 - gpu.mean(rate, cheapest, metric) / gpu.mean(rate, BASELINE, metric)
        interval = f"{BASELINE} − {cheapest}: {level_text(p['level'])} CI {ci_text(p['ci'])} J"
        if p["distinguishable"]:
            verdict = f"the repeats resolve it ({interval})"
        elif p["ci"] is None:  # cells left out of the figures can leave a pair one paired repeat
            verdict = (
                f"the repeats do not resolve it ({p['repeats']} paired repeat(s), too few for an interval)"
            )
        else:
            verdict = f"the repeats do not resolve it ({interval}, which includes zero)"
        lines.append(
            f"- **At {req_s(rate)}, `{cheapest}` costs least**: {mean_of(c, metric)} {unit} against "
            f"{mean_of(base, metric)} for `{BASELINE}`, {pct(saved)} less by the means ("
            + ", ".join(
                f"{name} {mean_of(c, key)} against {mean_of(base, key)} J"
                for key, name in ((ALL_IN, "all-in"), (ATTRIBUTED, "attributed"), (ABOVE_IDLE, "above idle"))
                if key != metric
            )
            + f"); {verdict}. Its users waited {mean_of(c, 'hold_p50_ms')} ms at "
            f"the median and {mean_of(c, 'hold_p99_ms')} ms at p99, and their p99 time to first token was "
            f"{mean_of(c, 'user_ttft_p99_s')} s against {mean_of(base, 'user_ttft_p99_s')} s."
        )
    for rate in inputs.rates:
        block = gpu.block(rate)
        front = [a["label"] for a in block["arms"] if a["on_front"]]
        off = [a for a in block["arms"] if a["on_front"] is False]
        resolved = [a["label"] for a in off if any(d["resolved"] for d in a["dominated_by"])]
        pairs = block["pairs"][metric]
        called = sum(p["distinguishable"] for p in pairs)
        outside = f"Off it: {names([a['label'] for a in off])}" if off else ""
        if not off:
            beside = "No policy is off it."
        elif resolved:
            beside = f"{outside}; the repeats resolve the domination of {names(resolved)}."
        else:
            beside = f"{outside}; no domination is resolved by the repeats."
        lines.append(
            f"- **The front at {req_s(rate)}** (by means, {s['frontier']['energy_label']} against "
            f"{s['frontier']['latency_label']}): {names(front)}. {beside} {called} of {len(pairs)} pairs are "
            f"distinguishable on {s['metric_label']}."
        )
    lines += [*repeats_note(inputs), *mock_reading(inputs), *flag_notes(inputs), ""]
    return lines


def repeats_note(inputs: Inputs) -> list[str]:
    gpu, s = inputs.gpu, inputs.gpu.summary
    design, metric = s["design"], s["metric"]
    pairs = gpu.block(inputs.rates[0])["pairs"][metric]
    every = [p for r in inputs.rates for p in gpu.block(r)["pairs"][metric]]
    # Cells left out of the figures (an error flag) leave some pairs fewer paired repeats, or none.
    widest = max(((p["ci"][1] - p["ci"][0]) / 2 for p in every if p["ci"] is not None), default=math.nan)
    short = [p for p in every if p["repeats"] < design["repeats"]]
    no_ci = sum(p["ci"] is None for p in every)
    unresolved = [
        (r, p)
        for r in inputs.rates
        for p in gpu.block(r)["pairs"][metric]
        if not p["distinguishable"] and p["relative"] is not None
    ]
    largest = ""
    if unresolved:
        rate, big = max(unresolved, key=lambda item: abs(item[1]["relative"]))
        label = {a["arm"]: a["label"] for a in gpu.block(rate)["arms"]}
        largest = (
            f" The largest difference left unresolved: `{label[big['a']]}` against `{label[big['b']]}` at "
            f"{req_s(rate)}, {pct(abs(big['relative']))} by the means."
        )
    fewer = ""
    if short:
        fewer = (
            f" (fewer for the {len(short)} of {len(every)} pairs whose cells the flags above leave out"
            + (f"; {no_ci} of them have too few paired repeats for an interval" if no_ci else "")
            + ")"
        )
    return [
        f"- **{design['repeats']} repeats for {len(inputs.labels)} policies**: each of the {len(pairs)} "
        f"pairs per rate is tested at {level_text(pairs[0]['level'])} ({correction(design)}, "
        f"{level_text(design['level'])} together) with {design['repeats'] - 1} degrees of freedom{fewer}; "
        f"the widest interval reaches ±{num(widest)} J.{largest}"
    ]


def mock_reading(inputs: Inputs) -> list[str]:
    metric = inputs.gpu.summary["metric"]
    lines = []
    for rate in inputs.rates:
        on_gpu = {k: inputs.gpu.mean(rate, k, metric) for k in inputs.labels}
        on_mock = {k: inputs.mock.mean(rate, k, metric) for k in inputs.labels}
        agree, total, against = 0, 0, []
        for a, b in combinations(inputs.labels, 2):
            p = inputs.gpu.pair(rate, metric, a, b)
            if not p["distinguishable"]:
                continue
            total += 1
            if (on_gpu[a] - on_gpu[b]) * (on_mock[a] - on_mock[b]) > 0:
                agree += 1
            else:
                against.append(f"`{a}` vs `{b}`")
        order = names(sorted(inputs.labels, key=on_mock.__getitem__)[:3])
        lines.append(
            f"- **The mock at {req_s(rate)}** ranks the policies with a Spearman correlation of "
            f"{spearman(on_gpu, on_mock):.2f} to the GPU's ranking (cheapest three on the mock: {order}); of "
            f"the {total} pairs the GPU's repeats distinguish, it orders {agree} the same way"
            + (f" (not: {', '.join(against)})" if against else "")
            + "."
        )
    return lines


def flag_meanings() -> dict[str, tuple[str, str]]:
    """code -> (severity, meaning), from the flag table of docs/energy.md (one source for both)."""
    found = {}
    for line in (REPO / "docs" / "energy.md").read_text().splitlines():
        m = re.match(r"^\| ((?:`\w+`(?:, )?)+) \| (warning|error|info) \| (.*) \|$", line)
        if m:
            for code in re.findall(r"`(\w+)`", m.group(1)):
                found[code] = (m.group(2), m.group(3))
    return found


def flag_notes(inputs: Inputs) -> list[str]:
    cells = inputs.gpu.cells[inputs.gpu.cells["status"] == "done"]
    counts = Counter(code for text in cells["flags"] for code in str(text).split(",") if code)
    meanings = flag_meanings()
    parts = [
        f"`{code}` ({meanings.get(code, ('?', 'see docs/energy.md'))[0]}: "
        f"{meanings.get(code, ('?', 'see docs/energy.md'))[1]}) on {n} of {len(cells)} cells"
        for code, n in sorted(counts.items())
    ]
    short = int((cells["duration_s"] < 10).sum())
    excluded = int(inputs.gpu.summary["cells_excluded"] or 0)
    return [
        f"- **Flags**: {'; '.join(parts) or 'none'}. {short} of {len(cells)} arm windows last under 10 s, "
        f"and every cell's idle window is its {g(inputs.gpu.summary['design']['cooldown_s'])} s cool-down. "
        f"Cells left out of the figures for an error flag: {excluded}."
    ]


def policy_tables(inputs: Inputs) -> list[str]:
    s = inputs.gpu.summary
    level = level_text(s["level"])
    slo = s["frontier"].get("slo_ttft_s")
    lines = ["## Per policy", ""]
    for rate in inputs.rates:
        lines += [
            f"### {req_s(rate)}",
            "",
            *header(
                "policy",
                f"all-in J/req [{level} CI]",
                f"attributed J/req [{level} CI]",
                f"above-idle J/req [{level} CI]",
                "hold p50 / p99 ms",
                "user TTFT p50 / p99 s",
                "user E2E p99 s",
                f"goodput (TTFT ≤ {g(slo)} s)" if slo else "goodput",
                "on the front",
            ),
        ]
        for label, arm in inputs.gpu.arms(rate).items():
            lines.append(
                row(
                    f"`{label}`",
                    fig_ci(arm, ALL_IN),
                    fig_ci(arm, ATTRIBUTED),
                    fig_ci(arm, ABOVE_IDLE),
                    f"{mean_of(arm, 'hold_p50_ms')} / {mean_of(arm, 'hold_p99_ms')}",
                    f"{mean_of(arm, 'user_ttft_p50_s')} / {mean_of(arm, 'user_ttft_p99_s')}",
                    mean_of(arm, "user_e2e_p99_s"),
                    pct((arm["figures"].get("goodput_share") or {}).get("mean")),
                    "yes" if arm["on_front"] else "-",
                )
            )
        lines.append("")
    lines += [
        "Means over the repeats (one value per cell). All-in = the arm window's counter energy over its "
        "successful requests (idle gaps included); attributed = the mean of the requests' own shares; "
        "above idle = all-in less idle power × the window. Hold = release − the user's arrival; user "
        "TTFT and E2E count from the arrival, so they include the hold. The intervals are Student-t over "
        "repeats (energy's widened by the counter's resolution).",
        "",
        "![frontier.png](experiment/frontier.png)",
        "",
        "Each point is a policy's mean over the repeats, with both intervals as bars; the dashed staircase "
        "is the front by means (`experiment/report.html` lists which arm dominates each one off it, and "
        "whether the repeats resolve that).",
        "",
    ]
    return lines


def against_baseline(inputs: Inputs) -> list[str]:
    s = inputs.gpu.summary
    lines = [
        f"## Each policy against `{BASELINE}`",
        "",
        f"Paired by repeat, {s['metric_label']}; the intervals are the experiment's ({correction(s)}). "
        "Negative: the policy costs less.",
        "",
        *header("rate", "policy", f"policy − {BASELINE} J/req", "CI", "level", "relative", "verdict"),
    ]
    for rate in inputs.rates:
        for label in inputs.labels:
            if label == BASELINE:
                continue
            p = inputs.gpu.pair(rate, s["metric"], label, BASELINE)
            base = inputs.gpu.mean(rate, BASELINE, s["metric"])
            verdict = "distinguishable" if p["distinguishable"] else "not distinguishable"
            lines.append(
                row(
                    g(rate),
                    f"`{label}`",
                    num(p["mean"]),
                    ci_text(p["ci"]),
                    level_text(p["level"]),
                    "-" if p["mean"] is None else pct(p["mean"] / base),  # no paired repeat
                    verdict,
                )
            )
    return [*lines, ""]


def mock_table(inputs: Inputs) -> list[str]:
    metric = inputs.gpu.summary["metric"]
    mock_design = inputs.mock.summary["design"]
    args = list(inputs.mock.folder.spec_data()["target"].get("mock_args") or [])
    profile = args[args.index("--profile") + 1] if "--profile" in args[:-1] else DEFAULT_PROFILE
    lines = [
        "## The mock beside the GPU",
        "",
        f"The same experiment file on the embedded mock (`--target embedded`: the mock server with the "
        f"profile `{profile}` and a simulated sidecar; mock flags: {' '.join(args) or 'none'}), "
        f"{mock_design['repeats']} repeats, in mock/ ({excluded_text(inputs.mock)}). "
        f"Per policy its {inputs.mock.summary['metric_label']}, mean over repeats, and its rank at the "
        "rate (1 = cheapest):",
        "",
        *header("rate", "policy", "GPU J/req", "GPU rank", "mock J/req", "mock rank"),
    ]
    for rate in inputs.rates:
        on_gpu = {k: inputs.gpu.mean(rate, k, metric) for k in inputs.labels}
        on_mock = {k: inputs.mock.mean(rate, k, metric) for k in inputs.labels}
        rg, rm = ranks(on_gpu), ranks(on_mock)
        for label in inputs.labels:
            lines.append(
                row(g(rate), f"`{label}`", num(on_gpu[label]), rg[label], num(on_mock[label]), rm[label])
            )
    lines += [
        "",
        "The mock simulates the GPU of its profile, not this one, so its joules differ; what it should "
        "reproduce is which policies cost less, where the GPU's repeats can tell.",
        "",
    ]
    return lines


def excluded_text(side: Side) -> str:
    """How many cells an error flag left out of the figures, and which flags."""
    done = side.cells[side.cells["status"] == "done"]
    errors = {code for code, (severity, _) in flag_meanings().items() if severity == "error"}
    hit = Counter(c for text in done["flags"] for c in str(text).split(",") if c in errors)
    n = int(side.summary["cells_excluded"] or 0)
    if not n:
        return "no cell left out"
    return f"{n} of {len(done)} cells left out for an error flag: " + ", ".join(
        f"`{code}` ({k})" for code, k in sorted(hit.items())
    )


def setup(inputs: Inputs) -> list[str]:
    m, server, design = inputs.machine, inputs.server, inputs.gpu.summary["design"]
    flags = server.get("flags", {})
    shown = " ".join(
        f"`{k}`" if v is True else f"`{k} {v}`"
        for k, v in flags.items()
        if k not in ("--model", "--host", "--port")
    )
    plans = {r: load_plan(inputs.gpu.folder.plan_path(r)) for r in inputs.rates}
    first = plans[inputs.rates[0]].rows
    tokens = first.groupby("arm")["prompt_tokens"].mean().iloc[0]
    policies = ", ".join(f"`{p}`" for p in inputs.spec["plan"]["policies"])
    spans = "; ".join(
        f"{req_s(r)}: hash `{p.header.plan_hash[:16]}`, last arrival at "
        f"{float(p.rows['offset_s'].max()):.3g} s"
        for r, p in plans.items()
    )
    return [
        "## Setup",
        "",
        f"- **GPU and server** (`machine.txt`, `vllm_server.json`): {m['name']} (driver "
        f"{m['driver_version']}, power limit {m['power.limit [W]']}) on a {m['CPU(s)']}-core "
        f"{m['Model name']} host; vLLM {server['version']} (torch {m['torch']}) started by `joulebench "
        f"serve vllm` ({server['launcher']}) with {shown}. The model is random weights in "
        f"{model_shape()}; joulebench {m['joulebench']}.",
        f"- **Plan** (`experiment/plans/`, one per rate; {spans}): {inputs.spec['plan']['n']} prompts from "
        f"`{Path(str(inputs.spec['plan']['prompts'])).name}` (mean {num(float(tokens), 3)} prompt tokens), "
        "the same prompts and the same Poisson arrivals for every policy and every repeat at a rate. "
        f"Policies: {policies}.",
        f"- **Design** (`experiment/experiment.yaml`, from `benchmarks/gpu/shaping-h200.yaml`): "
        f"{design['repeats']} repeats; in each, the (rate, policy) cells in a {design['order']} order "
        f"(seed {design['seed']}); {g(design['cooldown_s'])} s of idle before every cell, measured as its "
        f"idle power; {slo_text(design)}; energy split among requests in flight by `{design['method']}`.",
        f"- **Power**: {power_text(inputs)}.",
        "- **A first attempt was stopped** after 8 cells: its arm was written `poisson:rate=2`, whose own "
        'rate wins over the experiment\'s `rates`, so its "8 requests/s" cells ran at 2. Nothing of it is '
        "used here; `joulebench experiment` now refuses an arm with its own rate in a rate sweep.",
        "",
    ]


def slo_text(design: dict[str, Any]) -> str:
    given = [f"{name} ≤ {g(design[key])} s" for name, key in (("TTFT", "slo_ttft_s"), ("E2E", "slo_e2e_s"))
             if design.get(key) is not None]  # fmt: skip
    return f"goodput under an SLO from arrival of {' and '.join(given)}" if given else "no SLO, so no goodput"


def power_text(inputs: Inputs) -> str:
    """The sources the experiment read (its first the join's) and the sidecar's own first log line."""
    power = inputs.spec.get("power") or {}
    sources = [k for k in ("sidecar", "prometheus", "dcgm") if power.get(k)]
    log = inputs.results / "logs" / "sidecar.log"
    said = log.read_text().splitlines()[0].split(";")[:2] if log.is_file() else []
    sidecar = f' (`logs/sidecar.log`: "{";".join(said).strip()}")' if said else ""
    return f"{' and '.join(sources)}, the join using the {power.get('primary') or sources[0]}{sidecar}" + (
        "; the others are a cross-check in every cell's manifest" if len(sources) > 1 else ""
    )


def commands(inputs: Inputs) -> list[str]:
    results = f"docs/results/{inputs.results.resolve().name}"
    experiment_id = str(inputs.gpu.cells["experiment_id"].iloc[0])
    return [
        "## Commands",
        "",
        "On a CPU machine with PyPI, `bash benchmarks/gpu/prepare.sh`; then on the GPU machine, one call "
        "each (the servers and the experiment outlive a call; `wait` follows the experiment):",
        "",
        "```bash",
        "bash benchmarks/gpu/experiment.sh stash .chunks/c00      # and c01, c02: one call each",
        "bash benchmarks/gpu/experiment.sh stash .gpu/whl .gpu/deb .gpu/data",
        "export EXPERIMENT=$PWD/benchmarks/gpu/shaping-h200.yaml",
        "bash benchmarks/gpu/experiment.sh setup start experiment wait 240",
        "bash benchmarks/gpu/experiment.sh wait 560",
        "bash benchmarks/gpu/experiment.sh wait 470 collect && bash benchmarks/gpu/experiment.sh stop",
        "```",
        "",
        f"Back here, `results.tgz`'s `experiments/{experiment_id}` became `experiment/` without each run's "
        "`requests.jsonl` and `power_samples.jsonl` (`requests.parquet` and `power.parquet` hold them in "
        "compact form); the logs went to `logs/`, `vllm/server.json` to `vllm_server.json`. The mock "
        "experiment, on this 2-core CPU machine (its folder kept without `runs/`):",
        "",
        "```bash",
        "joulebench experiment run benchmarks/gpu/shaping-h200.yaml --target embedded \\",
        "    --set power.sidecar=null --set power.prometheus=null \\",
        "    --set plan.prompts=../shared/data/prompts/ultrachat/ultrachat_prompts.jsonl \\",
        "    --set plan.tokenizer=../shared/data/models/Llama-3-tokenizer/tokenizer.json --out /tmp/mock",
        f"joulebench experiment report {results}/experiment",
        f"joulebench experiment report {results}/mock",
        f"python benchmarks/gpu/shaping_page.py {results}",
        "```",
        "",
        "After a change to the analysis, `bash benchmarks/gpu/rebuild_committed.sh` reports every committed "
        "run folder again (`joulebench report`), then each experiment (`joulebench experiment report "
        "--refigure`) and the pages.",
        "",
    ]


def page(inputs: Inputs) -> str:
    sections = [
        *title_and_intro(inputs),
        *reading(inputs),
        *policy_tables(inputs),
        *against_baseline(inputs),
        *mock_table(inputs),
        *setup(inputs),
        *commands(inputs),
    ]
    return page_text(inputs.results, sections)


def main() -> None:
    page_cli(__doc__ or "", "experiment/, mock/, machine.txt, ...", lambda args: page(load(args.results)))


if __name__ == "__main__":
    main()
