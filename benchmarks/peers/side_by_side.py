#!/usr/bin/env python3
"""joulebench side by side with GuideLLM, AIPerf and inference-perf, judged by the server (issue 19).

Every tool sends the same fixed-rate run (constant inter-arrival gap 1 / rate: each tool's
`constant` schedule; joulebench's `fixed:interval`) of --requests streamed chat completions of
--tokens output tokens to one `stream_server.py` (inference-perf: text completions, the only API
its synthetic data supports), which records when each request arrived on this machine's monotonic
clock. Per run:

  lateness         each arrival against the ideal grid t0 + i / rate (peer_figures.py says why and
                   how t0 is placed); p50 / p99 / max, ms. The same definition for every tool,
                   joulebench included: none of the peers logs its intended send times
  realized rate    (n - 1) / (last arrival - first arrival)
  CPU per request  the tool's whole process tree (user + system, from /proc every 100 ms) between
                   its first and last arrival, over n - 1: the cost of keeping the schedule; and
                   its children's rusage over its whole life (start-up and reports too), over n

Each (tokens, rate, tool) runs --repeats times (tools in a rotated order per repeat, so none always
goes first); the table gives medians with (min–max) and ratios to joulebench's medians. Writes to
--out side_by_side.json (every run's figures and server arrivals, the commands, the machine) and
side_by_side.md (the table).

The peers come from `bash benchmarks/peers/setup.sh` (virtualenvs under $PEERS_HOME, default .peers/,
never joulebench's dependencies); a tool not installed there is reported as skipped, with the reason
setup.sh left. See benchmarks/peers/README.md.

    python benchmarks/peers/side_by_side.py                           # 100 and 500 req/s, 16 and 128 tokens
    python benchmarks/peers/side_by_side.py --rates 100 --requests 300 --tokens 16 --repeats 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(REPO), str(HERE)]

from peer_figures import run_figures, summarize, table  # noqa: E402

from harness.session.provenance import cpu_model  # noqa: E402

TOOLS = ("joulebench", "guidellm", "aiperf", "inference-perf")
TOKENIZER = REPO.parent / "shared" / "data" / "models" / "Llama-3-tokenizer"
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
_SAMPLE_S = 0.1


def tool_command(
    tool: str, url: str, rate: float, n: int, tokens: int, args: argparse.Namespace, work: Path
) -> tuple[list[str], dict[str, str], int]:
    """The command line, the extra environment and the number of requests it will send. Options
    without paths are split from one string; paths (which may hold spaces) are whole arguments."""
    exe = str(args.peers_home / tool / "bin" / tool)
    if tool == "joulebench":
        options = (f"--prompts synthetic --schedule fixed:interval={1 / rate!r} --n {n} --warmup 0 "
                   f"--max-tokens {tokens} --idle 0 --server-metrics off --no-progress "
                   f"--transport {args.transport}")  # fmt: skip
        joulebench = str(Path(sys.executable).parent / "joulebench")
        return [joulebench, "run", "--target", url, *options.split(), "--out", str(work / "runs")], {}, n
    if tool == "guidellm":
        options = (f"--profile kind=constant,rate={rate:g} --constraint kind=max_requests,count={n} "
                   f"--data kind=synthetic_text,prompt_tokens={args.prompt_tokens},output_tokens={tokens} "
                   "--disable-console-interactive")  # fmt: skip
        argv = [exe, "run", "--backend", f"kind=openai_http,target={url}", *options.split(),
                "--tokenizer", f"kind=huggingface_auto,model={args.tokenizer}",
                "--output", f"kind=json,path={work / 'guidellm.json'}"]  # fmt: skip
        # HF_HUB_OFFLINE: the tokenizer is a local folder; without it transformers asks the Hub first.
        return argv, {"HF_HUB_OFFLINE": "1"}, n
    if tool == "aiperf":
        options = (f"--model arrival --endpoint-type chat --streaming --request-rate {rate:g} "
                   f"--arrival-pattern constant --request-count {n} --prompt-input-tokens-stddev 0 "
                   f"--prompt-input-tokens-mean {args.prompt_tokens} --prompt-output-tokens-mean {tokens} "
                   "--random-seed 1 --ui-type none --no-server-metrics --no-gpu-telemetry")  # fmt: skip
        argv = [exe, "profile", "--url", url, *options.split(), "--tokenizer", str(args.tokenizer),
                "--artifact-dir", str(work / "aiperf")]  # fmt: skip
        # No HF_HUB_OFFLINE here: in offline mode aiperf 0.13 looks a local tokenizer folder up in the
        # Hub cache and fails; online, a local path is loaded directly.
        return argv, {}, n
    if tool == "inference-perf":
        # Its constant load runs whole-second stages (duration: int), so it sends rate x ceil(n / rate).
        duration = math.ceil(n / rate)
        prompt, out = ({"min": k, "max": k, "mean": k, "std_dev": 0} for k in (args.prompt_tokens, tokens))
        config = {
            "load": {"type": "constant", "stages": [{"rate": rate, "duration": duration}], "base_seed": 1},
            # completion: its synthetic ("random") data supports no other API
            "api": {"type": "completion", "streaming": True},
            "server": {"type": "vllm", "model_name": "arrival", "base_url": url, "ignore_eos": True},
            "tokenizer": {"pretrained_model_name_or_path": str(args.tokenizer)},
            "data": {"type": "random", "input_distribution": prompt, "output_distribution": out},
            "storage": {"local_storage": {"path": str(work / "reports")}},
        }
        (work / "inference-perf.yml").write_text(json.dumps(config))  # JSON is YAML
        return [exe, "-c", str(work / "inference-perf.yml")], {}, round(rate * duration)
    raise ValueError(f"unknown tool {tool!r}")


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of `root` and its live descendants, plus what they have reaped.
    One pass over /proc: this kernel has no /proc/PID/task/TID/children."""
    parent: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue  # gone since the listing
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
        pid = int(entry)
        parent[pid] = int(fields[1])
        cpu[pid] = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    total, todo = 0, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total * _TICK_S


@contextmanager
def sampled(pid: int) -> Iterator[list[tuple[int, float]]]:
    """(monotonic_ns, cumulative CPU s) of pid's tree every _SAMPLE_S, on absolute deadlines."""
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def loop() -> None:
        due = time.monotonic()
        while not stop.is_set():
            samples.append((time.monotonic_ns(), tree_cpu_s(pid)))
            due += _SAMPLE_S
            stop.wait(max(0.0, due - time.monotonic()))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def arrivals(url: str) -> list[int]:
    with urllib.request.urlopen(url + "/arrivals", timeout=30) as response:
        return [int(t) for t in json.loads(response.read())]


def run_once(tool: str, url: str, rate: float, tokens: int, args: argparse.Namespace) -> dict[str, Any]:
    run: dict[str, Any] = {"tool": tool, "rate": rate, "tokens": tokens}
    skipped = args.peers_home / f"{tool}.skipped"
    if tool != "joulebench" and not (args.peers_home / tool / "bin" / tool).exists():
        reason = skipped.read_text().strip() if skipped.exists() else "not installed"
        return {**run, "requests": args.requests, "error": f"{reason} (bash benchmarks/peers/setup.sh)"}
    with tempfile.TemporaryDirectory(prefix=f"peers-{tool}-") as tmp:
        work = Path(tmp)
        argv, env, n = tool_command(tool, url, rate, args.requests, tokens, args, work)
        run.update(requests=n, command=argv)
        arrivals(url)  # forget anything before this run
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        with (work / "log").open("wb") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=work, env={**os.environ, **env}
            )
            with sampled(proc.pid) as samples:
                try:
                    code = proc.wait(timeout=args.run_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seen = arrivals(url)
        run["wall_s"] = time.monotonic() - start
        cpu_total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        run["figures"] = run_figures(seen, rate, samples, cpu_total)
        run["arrivals_us"] = [(t - min(seen)) // 1000 for t in sorted(seen)]  # the raw truth, re-computable
        if code != 0 or len(seen) < 2:
            tail = (work / "log").read_text(errors="replace")[-1500:]
            run["error"] = f"exit {code}, {len(seen)} of {n} requests arrived"
            run["log_tail"] = tail
    return run


@contextmanager
def stream_server(tokens: int, itl_ms: float) -> Iterator[str]:
    server = subprocess.Popen(
        [sys.executable, str(HERE / "stream_server.py"), "--tokens", str(tokens), "--itl-ms", str(itl_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.terminate()
        server.wait(timeout=10)


def _numbers(kind: type, text: str) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated, of " + ", ".join(TOOLS))
    parser.add_argument("--rates", default="100,500", help="req/s, comma-separated")
    parser.add_argument("--requests", type=int, default=1000, help="requests per run")
    parser.add_argument(
        "--tokens", default="16,128", help="streamed output tokens per request, comma-separated"
    )
    parser.add_argument("--prompt-tokens", type=int, default=32, help="synthetic prompt length for the peers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--itl-ms", type=float, default=0.0, help="the server's gap between streamed tokens")
    parser.add_argument(
        "--transport", default="aiohttp", choices=("aiohttp", "sender", "auto"),
        help="joulebench's --transport: aiohttp, with which benchmarks/results/peers was made (the "
        "runner's default then; auto takes the sender here)",
    )  # fmt: skip
    parser.add_argument(
        "--peers-home", type=Path, default=Path(os.environ.get("PEERS_HOME", REPO / ".peers"))
    )
    parser.add_argument(
        "--tokenizer", type=Path, default=TOKENIZER, help="a local Hugging Face tokenizer folder"
    )
    parser.add_argument(
        "--run-timeout", type=float, default=600, help="seconds before one tool run is killed"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / f"peers-{datetime.date.today()}"
    )
    args = parser.parse_args(argv)
    try:
        args.tools, args.rates, args.tokens = (
            args.tools.split(","),
            _numbers(float, args.rates),
            _numbers(int, args.tokens),
        )
    except ValueError as e:
        parser.error(f"--rates / --tokens: {e}")
    if unknown := set(args.tools) - set(TOOLS):
        parser.error(f"--tools: unknown {', '.join(sorted(unknown))} (of {', '.join(TOOLS)})")
    if (
        args.requests < 2
        or args.repeats < 1
        or min(args.rates, default=0) <= 0
        or min(args.tokens, default=0) < 1
    ):
        parser.error("--requests must be >= 2, --repeats >= 1, every rate > 0 and every token count >= 1")
    if any(t != "joulebench" for t in args.tools) and not (args.tokenizer / "tokenizer.json").is_file():
        parser.error(f"--tokenizer: no tokenizer.json in {args.tokenizer} (the peers need a local tokenizer)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for tokens in args.tokens:
        with stream_server(tokens, args.itl_ms) as url:
            for repeat in range(args.repeats):
                for rate in args.rates:
                    k = repeat % len(args.tools)
                    for tool in args.tools[k:] + args.tools[:k]:
                        run = {**run_once(tool, url, rate, tokens, args), "repeat": repeat}
                        runs.append(run)
                        figures = run.get("figures", {})
                        print(
                            f"{tool:>15} {rate:6g} req/s {tokens:4d} tok #{repeat}: "
                            + (
                                run["error"]
                                if run.get("error")
                                else f"p99 {figures['lateness_p99_ms']:.2f} ms, "
                                f"CPU {figures['cpu_ms_per_request']:.3f} ms/req"
                            ),
                            flush=True,
                        )
    rows = summarize(runs)
    text = table(rows)
    result = {
        "command": [sys.executable, *sys.argv] if argv is None else argv,
        "schedule": "constant rate (fixed interval 1 / rate) for every tool",
        "machine": {
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "summary": rows,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "side_by_side.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "side_by_side.md").write_text(text + "\n")
    print(text)
    print(f"wrote {args.out / 'side_by_side.json'} and side_by_side.md")


if __name__ == "__main__":
    main()
