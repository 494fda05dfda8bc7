"""How close each energy split comes to the truth: per-request error against the mock's own account.

Runs the embedded default's plan (three schedules, docs/run.md) against the embedded stack's real
processes (mock server and simulated sidecar, `harness/session/embedded_stack.py`) with `joulebench
run`, reads the mock's ground truth (`GET /sim/requests`: each request's share of the simulated
energy, docs/mock.md) when the run is over, then joins the run folder with every method (`time`,
`tokens`, `steps`) and prints, per schedule, the distribution of each request's error

    |dynamic_j(method) − dynamic_j(truth)| / dynamic_j(truth)

over its successful requests (median, p90, in %). Dynamic energy (above idle) is compared because it
is the part the simulator can assign to requests by cause; the idle power of a GPU waiting between
steps belongs to no request, and each split hands it out by its own convention. A request is matched
to the truth by the `x-request-id` response header the run keeps (its last 16 hex digits are the
simulator's request number).

    python benchmarks/split_error.py                 # the embedded plan (60 requests per arm)
    python benchmarks/split_error.py --n 20          # a quicker check

Writes benchmarks/results/split_error.json (raw figures) and split_error.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from harness.energy.split import METHODS
from harness.report.run_inputs import analyze_run
from harness.session.embedded_stack import DEFAULT_PLAN, EmbeddedStack
from traffic.builder import build_plan
from traffic.plan import save_plan
from traffic.spec import PlanSpec

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def truth_frame(url: str) -> pd.DataFrame:
    with urllib.request.urlopen(f"{url}/sim/requests", timeout=30) as response:
        doc = json.load(response)
    return pd.DataFrame(doc["requests"]).set_index("rid")


def simulator_rid(server_timing: Any) -> int | None:
    """The simulator's request number from the kept `x-request-id` header (None if not there)."""
    if not isinstance(server_timing, str):
        return None
    xid = json.loads(server_timing).get("x-request-id")
    return int(str(xid)[-16:], 16) if xid else None


def run_plan(n: int, work: Path) -> tuple[Path, pd.DataFrame]:
    """One `joulebench run` of the embedded plan against the embedded stack; (run folder, truth)."""
    spec = PlanSpec.parse({**DEFAULT_PLAN, "n": n}, label=lambda path: f"benchmark plan: {path}")
    plan_file = work / "plan.parquet"
    save_plan(build_plan(spec), plan_file)
    out = work / "runs"
    with EmbeddedStack(Console(stderr=True)) as stack:
        command = [sys.executable, "-m", "harness", "run", "--target", stack.mock_url, "--sidecar",
                   stack.sidecar_url, "--plan", str(plan_file), "--out", str(out)]  # fmt: skip
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        truth = truth_frame(stack.mock_url)
    (folder,) = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    return folder, truth


def errors(folder: Path, truth: pd.DataFrame) -> dict[str, Any]:
    """Per method and schedule: the per-request error distribution of dynamic energy, in %."""
    out: dict[str, Any] = {"methods": {}, "fits": {}}
    for method in METHODS:
        inputs, analysis = analyze_run(folder, method=method)
        req = analysis.requests
        rid = inputs.requests["server_timing"].map(simulator_rid)
        ok = (req["status"] == "ok") & ~req["warmup"].fillna(False).astype(bool) & rid.notna()
        matched = rid[ok].astype(int)
        true_j = truth.reindex(matched.to_numpy())["dynamic_j"].to_numpy(dtype=float)
        got_j = req.loc[ok, "dynamic_j"].to_numpy(dtype=float)
        err = np.abs(got_j - true_j) / true_j * 100.0
        arms = req.loc[ok, "arm"].to_numpy()
        out["methods"][method] = {
            arm: {
                "n": int(np.count_nonzero(arms == arm)),
                "median_pct": float(np.nanmedian(err[arms == arm])),
                "p90_pct": float(np.nanpercentile(err[arms == arm], 90)),
                "sum_pct": float(abs(got_j[arms == arm].sum() / true_j[arms == arm].sum() - 1) * 100),
            }
            for arm in dict.fromkeys(arms)
        }
        out["fits"][method] = analysis.summary.get("token_fit")
    return out


def markdown(result: dict[str, Any]) -> str:
    methods = list(result["methods"])
    arms = list(result["methods"][methods[0]])
    lines = [
        "# Split error against the mock's ground truth",
        "",
        f"Command: `python benchmarks/split_error.py{result['args']}`  ",
        f"Host: {result['host']}; {result['utc']}; run {result['run_id']}.",
        "",
        "Per-request |error| of `dynamic_j` against the simulator's account (`GET /sim/requests`), over",
        "each schedule's successful requests, in %: median / p90 (and the error of the schedule's sum).",
        "",
        "| schedule | n | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for arm in arms:
        cells = [
            f"{m['median_pct']:.1f} / {m['p90_pct']:.1f} ({m['sum_pct']:.1f})"
            for m in (result["methods"][method][arm] for method in methods)
        ]
        lines.append(f"| {arm} | {result['methods'][methods[0]][arm]['n']} | " + " | ".join(cells) + " |")
    lines += ["", "Work fit per method (`summary.json` `token_fit`):", ""]
    for method, fit in result["fits"].items():
        if fit is not None:
            figures = ", ".join(
                f"{name} {'-' if fit[key] is None else format(fit[key], '.3g')}"
                for name, key in (("J/step", "j_per_step"), ("J/decoded token", "j_per_decoded_token"),
                                  ("J/prompt token", "j_per_prompt_token"), ("R²", "r2"))
            )  # fmt: skip
            why = "usable" if fit["usable"] else f"not usable: {fit['reason']}"
            lines.append(
                f"- {method}: {fit['weights']} weights ({why}); {figures}; {fit['n_intervals']} pools"
            )
    verdict = all(
        result["methods"]["steps"][arm]["median_pct"] < result["methods"]["time"][arm]["median_pct"]
        for arm in arms
    )
    lines += ["", f"steps' median error below time's on every schedule: **{'yes' if verdict else 'no'}**", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=int(DEFAULT_PLAN["n"]), help="requests per arm")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="split-error-") as tmp:
        folder, truth = run_plan(args.n, Path(tmp))
        result = errors(folder, truth)
        result["run_id"] = folder.name
    result["args"] = "" if args.n == DEFAULT_PLAN["n"] else f" --n {args.n}"
    result["host"] = f"{platform.node()} ({os.cpu_count()} CPUs), Python {platform.python_version()}"
    result["utc"] = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())
    text = markdown(result)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split_error.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "split_error.md").write_text(text)


if __name__ == "__main__":
    main()
