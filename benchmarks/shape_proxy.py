#!/usr/bin/env python3
"""The shaping proxy (`joulebench shape`): what it adds to latency, and how precisely it releases.

Against the mock server (`synthetic-fast` profile: 1 ms steps, never the bottleneck), the real
runner (`harness.runner.execute_plan`, streaming, 8 output tokens) sends the same fixed schedule
twice per rate: straight to the mock, and through the proxy in `passthrough` (each process its own:
runner here, proxy and mock as subprocesses). From the runner's records:

  added latency   TTFT (first content chunk - sent) and E2E (done - sent), p50 and p99, through the
                  proxy minus direct
  proxy delay     from the proxy's log: its own time from a request's arrival to forwarding it
                  (sent_ns - arrived_ns), p50 / p99
  proxy CPU       the proxy process's CPU time over the point / requests it served

Then release-time precision, from the proxy's log, with Poisson arrivals: `window` (release at the
first boundary at or after arrival: policy start + k * period) and `pace` (the GCRA schedule each
release should have kept: max(arrival, previous tat advanced by 1/rate from the previous actual
release)). Reported: release - intended p50 / p99 / max, and sent - intended (the forwarding task's
wake-up too). The issue's targets are the figures themselves (no pass mark is set).

Writes to --out (default benchmarks/results/): shape_proxy.json (every point, the machine, the
command) and shape_proxy.md (the tables). Numbers depend on the machine and on what else runs on it:
the JSON records the CPU model and the load average before and after each point.

    python benchmarks/shape_proxy.py                                   # the full set (about a minute)
    python benchmarks/shape_proxy.py --rates 50 --duration 1 --precision-duration 1 --out /tmp/x
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# The package, the process helpers the tests use, and the proxy's own (tests/harness/shaping_proxy).
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "harness" / "shaping_proxy")]

from joulebench_testkit import run_mock_server  # noqa: E402
from shape_process import ShapeProxy, read_shape_log, run_shape_proxy  # noqa: E402

from harness.backends import resolve_target  # noqa: E402
from harness.runfolder import RunFolder  # noqa: E402
from harness.runner import RunOptions, execute_plan  # noqa: E402
from harness.session.provenance import cpu_model, versions  # noqa: E402
from traffic.builder import build_plan  # noqa: E402
from traffic.shaping.policy_params import interval_ns, seconds_ns  # noqa: E402
from traffic.spec import PlanSpec  # noqa: E402

WARMUP = 20
MAX_TOKENS = 8


def send(url: str, schedule: str, n: int, duration: float) -> pd.DataFrame:
    """The runner's measured rows for `n` requests on `schedule` to `url` (after WARMUP warm-ups)."""
    plan = build_plan(
        PlanSpec.parse({"prompts": "synthetic", "schedules": [schedule], "n": n, "max_tokens": MAX_TOKENS,
                        "ignore_eos": True, "seed": 1})
    )  # fmt: skip
    target = asyncio.run(resolve_target(url))
    # A client that cannot keep up stops after twice the planned span (the rest are not_sent).
    # aiohttp, as in the committed results (the default `auto` would take the sender here).
    options = RunOptions(stream=True, warmup=WARMUP, progress=False, time_limit_s=2 * duration + 5, grace_s=5,
                         timeout_s=30, transport="aiohttp")  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        return execute_plan(plan, target, RunFolder.create(out, plan), options).measured


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def shaped_lines(path: Path) -> pd.DataFrame:
    """The proxy's log lines of shaped requests, in arrival order."""
    lines = [r for r in read_shape_log(path) if r["k"] == "request" and r["shaped"]]
    return pd.DataFrame(lines).sort_values("arrived_ns").reset_index(drop=True)


def _spread(values_ms: np.ndarray) -> dict[str, float]:
    return {"p50": float(np.percentile(values_ms, 50)), "p99": float(np.percentile(values_ms, 99)),
            "max": float(values_ms.max())}  # fmt: skip


def latency_point(mock_url: str, proxy: ShapeProxy, rate: float, duration: float) -> dict[str, Any]:
    n = max(50, int(rate * duration))
    schedule = f"fixed:interval={1 / rate!r}"
    load_before = os.getloadavg()
    direct = send(mock_url, schedule, n, duration)
    cpu_before = cpu_seconds(proxy.process.pid)
    through = send(proxy.url, schedule, n, duration)
    cpu = cpu_seconds(proxy.process.pid) - cpu_before
    log = shaped_lines(proxy.log).iloc[-n:]  # the measured requests: the last n shaped ones
    figures: dict[str, Any] = {"rate": rate, "requests": n, "schedule": schedule}
    for name, rows in (("direct", direct), ("proxy", through)):
        ok = rows[rows["status"] == "ok"]
        figures[name] = {
            "status": {str(k): int(v) for k, v in rows["status"].value_counts().items()},
            "ttft_ms": _spread((ok["first_token_ns"] - ok["sent_ns"]).to_numpy(dtype=float) / 1e6),
            "e2e_ms": _spread((ok["done_ns"] - ok["sent_ns"]).to_numpy(dtype=float) / 1e6),
            "lateness_ms": _spread(rows["lateness_ns"].dropna().to_numpy(dtype=float) / 1e6),
        }
    figures["added_ms"] = {
        metric: {q: figures["proxy"][metric][q] - figures["direct"][metric][q] for q in ("p50", "p99")}
        for metric in ("ttft_ms", "e2e_ms")
    }
    figures["proxy_delay_ms"] = _spread((log["sent_ns"] - log["arrived_ns"]).to_numpy(dtype=float) / 1e6)
    figures["proxy_hold_ns_max"] = int(log["hold_ns"].max())
    figures["proxy_cpu_us_per_request"] = 1e6 * cpu / (n + WARMUP)
    figures["loadavg_before"], figures["loadavg_after"] = load_before, os.getloadavg()
    return figures


def intended_window(arrived: np.ndarray, origin: int, period_ns: int) -> np.ndarray:
    return origin + np.ceil((arrived - origin) / period_ns).astype(np.int64) * period_ns


def intended_pace(arrived: np.ndarray, released: np.ndarray, origin: int, interval_ns: int) -> np.ndarray:
    """What the GCRA (burst 1) would release at, given the releases that really happened before."""
    intended = np.empty_like(arrived)
    tat = origin
    for i, (a, r) in enumerate(zip(arrived, released, strict=True)):
        intended[i] = max(a, tat)
        tat = max(tat, r) + interval_ns
    return intended


def precision_point(
    mock_url: str, policy: str, offered: float, duration: float, logs: Path
) -> dict[str, Any]:
    n = max(50, int(offered * duration))
    load_before = os.getloadavg()
    with run_shape_proxy(mock_url, "--policy", policy, "--max-held", "100000", log_dir=logs) as proxy:
        rows = send(proxy.url, f"poisson:rate={offered!r}", n, duration)
        header = read_shape_log(proxy.log)[0]
        log = shaped_lines(proxy.log)
    origin, spec = header["policy_start_ns"], header["policy"]
    arrived = log["arrived_ns"].to_numpy(dtype=np.int64)
    released = log["released_ns"].to_numpy(dtype=np.int64)
    if spec["kind"] == "window":
        intended = intended_window(arrived, origin, seconds_ns(spec["period"]))
    else:  # the schedule runs from the policy's start, warm-ups included
        intended = intended_pace(arrived, released, origin, interval_ns(spec["rate"]))
    # The figures: the planned requests only (the warm-ups, sent one at a time, come first).
    measured = slice(WARMUP, None)
    late_ns, sent_ns = (released - intended)[measured], log["sent_ns"].to_numpy(dtype=np.int64)[measured]
    return {
        "policy": spec["name"],
        "offered_rate": offered,
        "requests": len(log) - WARMUP,
        "runner_status": {str(k): int(v) for k, v in rows["status"].value_counts().items()},
        "release_minus_intended_ms": _spread(late_ns / 1e6),
        "sent_minus_intended_ms": _spread((sent_ns - intended[measured]) / 1e6),
        "early_releases": int((late_ns < 0).sum()),
        "hold_ms": _spread(log["hold_ns"].to_numpy(dtype=float)[measured] / 1e6),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def summary_md(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# The shaping proxy: added latency and release precision",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {machine['cpu_model']}, {machine['cpus']} CPUs; load average before the first point "
        f"{machine['loadavg_start'][0]:.2f}.  ",
        "Upstream: the mock server (`synthetic-fast` profile, own process); load: the runner (own process), "
        f"streaming, {MAX_TOKENS} output tokens; the proxy in its own process.",
        "",
        "## Added latency, `passthrough`",
        "",
        "Fixed schedule, the same requests straight to the mock and through the proxy. Added = through the "
        "proxy minus direct; proxy delay = the proxy's own arrival-to-forward time, from its log; runner "
        "lateness = how late the runner sent (sent - due): on 2 cores the runner, the proxy and the mock "
        "share the CPU, so a busier proxy also delays the runner's sends.",
        "",
        "| rate (req/s) | requests | TTFT p50 / p99 direct (ms) | TTFT p50 / p99 proxy (ms) "
        "| added TTFT p50 / p99 (ms) | added E2E p50 / p99 (ms) | proxy delay p50 / p99 (ms) "
        "| proxy CPU µs/req | runner lateness p99 direct / proxy (ms) | runner ok (direct / proxy) "
        "| load avg |",
        "|---:|---:|---|---|---|---|---|---:|---|---|---:|",
    ]
    for p in result["latency"]:
        d, x, added = p["direct"], p["proxy"], p["added_ms"]
        lines.append(
            f"| {p['rate']:g} | {p['requests']} | {d['ttft_ms']['p50']:.2f} / {d['ttft_ms']['p99']:.2f} "
            f"| {x['ttft_ms']['p50']:.2f} / {x['ttft_ms']['p99']:.2f} "
            f"| {added['ttft_ms']['p50']:.2f} / {added['ttft_ms']['p99']:.2f} "
            f"| {added['e2e_ms']['p50']:.2f} / {added['e2e_ms']['p99']:.2f} "
            f"| {p['proxy_delay_ms']['p50']:.3f} / {p['proxy_delay_ms']['p99']:.3f} "
            f"| {p['proxy_cpu_us_per_request']:.0f} "
            f"| {d['lateness_ms']['p99']:.2f} / {x['lateness_ms']['p99']:.2f} "
            f"| {d['status'].get('ok', 0)} / {x['status'].get('ok', 0)} | {p['loadavg_after'][0]:.2f} |"
        )
    lines += [
        "",
        "## Release precision",
        "",
        "Poisson arrivals through the proxy; intended = when the policy's rule says the request goes "
        "(window: the first boundary at or after its arrival; pace: the GCRA schedule given the earlier "
        "releases). Release = the proxy's poll that released it; sent = when it was forwarded.",
        "",
        "| policy | offered (req/s) | requests | release − intended p50 / p99 / max (ms) "
        "| sent − intended p50 / p99 / max (ms) | released early | hold p50 / p99 (ms) | load avg |",
        "|---|---:|---:|---|---|---:|---|---:|",
    ]
    for p in result["precision"]:
        r, s, h = p["release_minus_intended_ms"], p["sent_minus_intended_ms"], p["hold_ms"]
        lines.append(
            f"| {p['policy']} | {p['offered_rate']:g} | {p['requests']} "
            f"| {r['p50']:.3f} / {r['p99']:.3f} / {r['max']:.1f} "
            f"| {s['p50']:.3f} / {s['p99']:.3f} / {s['max']:.1f} "
            f"| {p['early_releases']} | {h['p50']:.1f} / {h['p99']:.1f} | {p['loadavg_after'][0]:.2f} |"
        )
    lines += ["", "Raw figures: shape_proxy.json.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,1000", help="comma-separated req/s for the added latency")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per latency point")
    parser.add_argument("--window", type=float, default=0.1, help="window period, seconds")
    parser.add_argument("--pace", type=float, default=100.0, help="pace rate, req/s (offered: 90%% of it)")
    parser.add_argument(
        "--window-offered", type=float, default=200.0, help="offered req/s against the window"
    )
    parser.add_argument("--precision-duration", type=float, default=10.0, help="seconds per precision point")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "versions": versions(),
    }
    with tempfile.TemporaryDirectory() as logs, ExitStack() as stack:
        mock = stack.enter_context(run_mock_server("--profile", "synthetic-fast", log_dir=Path(logs)))
        proxy = stack.enter_context(
            run_shape_proxy(mock.url, "--policy", "passthrough", "--max-held", "100000", log_dir=Path(logs))
        )
        result["latency"] = []
        for rate in (float(r) for r in args.rates.split(",")):
            point = latency_point(mock.url, proxy, rate, args.duration)
            result["latency"].append(point)
            print(json.dumps(point), flush=True)
        result["precision"] = []
        for policy, offered in ((f"window:period={args.window!r}", args.window_offered),
                                (f"pace:rate={args.pace!r}", 0.9 * args.pace)):  # fmt: skip
            point = precision_point(mock.url, policy, offered, args.precision_duration, Path(logs))
            result["precision"].append(point)
            print(json.dumps(point), flush=True)
    (args.out / "shape_proxy.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "shape_proxy.md").write_text(summary_md(result))
    print(summary_md(result))


if __name__ == "__main__":
    main()
