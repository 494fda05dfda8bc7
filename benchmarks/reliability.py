"""The reliability table: faults held, bad inputs tried, secrets planted and not found, from real runs.

Everything runs as a user runs it: `joulebench` subprocesses against the mock server and the simulated
power sidecar (real processes on loopback), and every figure is counted from what those runs left.

- **Faults held.** (1) A plan sent to a mock that injects seeded faults (5xx, 429, disconnects,
  malformed events, stalls, latency spikes, missing usage), streaming and not: every request must be in
  requests.parquet exactly once, with the status the mock's own seeded draw says (the i-th request to
  arrive gets the i-th draw of `harness.mock.faults.FaultDrawer`, the mock's code and seed). (2) The
  runner SIGKILLed in the idle capture before the plan, before it sent a planned request, mid-plan, in
  the drain (all sent, some in flight) and during the report: after `joulebench recover`, every planned
  request in the log exactly once, and power.parquet rebuilt from power_samples.jsonl. (3) The power
  sidecar SIGKILLed as the second of two arms starts: that arm must get no all-in figure, and
  `--strict` must exit 1.
- **Inputs tried.** The fuzz corpus of tests/e2e/test_cli_fuzz.py (its derandomized examples,
  `--fuzz-examples` per command) and the cases of tests/e2e/test_bad_values_one_line.py: how many
  ended in one `joulebench: error:` line with exit status 2 and nothing left behind.
- **Secrets.** Distinct random canaries planted as URL userinfo (--target, --sidecar, --prometheus,
  an experiment's target and sidecar) and as API keys (one sent to tests/e2e/echo_server.py, which
  echoes it back in headers, a cookie, its text and errors); every byte of every run and experiment
  folder, and the commands' output, is searched for each canary, raw and as the Basic-auth token it
  travels as. A control proves the search sees the files: the key's variable name, which the
  manifest records by design, must be found.

    python benchmarks/reliability.py --out benchmarks/results/reliability.json

Writes the JSON (every figure; each failure with its command and output) and a .md beside it whose
table can be pasted into the README. About 5 minutes on 2 cores at the default sizes (flags below).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# The process helpers the tests use. The repository goes first: tests/harness/ (a test folder, not a
# package) would otherwise shadow the harness package.
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from joulebench_testkit import (  # noqa: E402
    PrometheusServer,
    joulebench_argv,
    run_joulebench,
    run_mock_server,
    simulated_sidecar,
    stop_process,
)

from harness.mock.faults import NO_FAULTS, FaultDrawer, FaultPlan  # noqa: E402
from harness.mock.profile import load_profile  # noqa: E402

PROFILE = "synthetic-fast"  # 1 ms decode steps: short runs, and the simulated GPU never limits them
# The fault runs' settings: the mock's flags, and the drawer that says what each request drew.
FAULTS = {
    "error_rate": 0.08, "rate_limit_rate": 0.05, "disconnect_rate": 0.08, "malformed_rate": 0.08,
    "stall_rate": 0.1, "spike_rate": 0.1, "no_usage_rate": 0.1,
    "error_statuses": [500, 503], "stall_s": 0.05, "spike_s": 0.05, "retry_after_s": 1,
}  # fmt: skip
FAULT_FLAGS = {"error_statuses": "--error-status", "retry_after_s": "--retry-after"}


# ------------------------------------------------------------------------------------------ helpers
def load_test_module(relative: str) -> ModuleType:
    """A test module by path (test folders are not packages), registered under its file name."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # before it runs: its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def jb(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run_joulebench(*args, cwd=cwd, env=env, timeout=300)


def must(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(
            f"{what}: exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )


def build_plan(folder: Path, schedules: list[str], n: int, max_tokens: int) -> Path:
    out = folder / "plan.parquet"
    arms = [flag for s in schedules for flag in ("--schedule", s)]
    must(jb("plan", "build", "--prompts", "synthetic", *arms, "--n", str(n), "--max-tokens", str(max_tokens),
            "--ignore-eos", "--seed", "1", "--out", str(out), "-q", cwd=folder), "plan build")  # fmt: skip
    return out


def the_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    return run


def measured(run: Path) -> pd.DataFrame:
    frame = pd.read_parquet(run / "requests.parquet")
    return frame[~frame["warmup"]]


def exactly_once(run: Path, plan: Path) -> dict[str, int]:
    """Planned requests, those in requests.parquet exactly once, and rows the plan does not have."""
    planned = set(pd.read_parquet(plan)["request_id"])
    counts = Counter(measured(run)["request_id"]) if (run / "requests.parquet").is_file() else Counter()
    return {
        "planned": len(planned),
        "exactly_once": sum(1 for rid in planned if counts[rid] == 1),
        "unplanned_rows": sum(v for rid, v in counts.items() if rid not in planned),
    }


@contextmanager
def subprocess_group(args: list[str], cwd: Path) -> Iterator[subprocess.Popen]:
    """`args` in a process group of its own, killed with it on the way out if still running."""
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


# ------------------------------------------------------------------------------------------ faults
def expected_status(drawn: FaultPlan) -> tuple[str, int, bool]:
    """(status, HTTP status, usage reported) a request with these faults must end with (docs/mock.md)."""
    if drawn.rate_limited:
        return "http_error", 429, False
    if drawn.error_status is not None:
        return "http_error", drawn.error_status, False
    if drawn.disconnect_at is not None or drawn.malformed_at is not None:
        return "stream_error", 200, False
    return "ok", 200, not drawn.no_usage  # a stall or a spike only delays it


def fault_run(work: Path, n: int, stream: bool, seed: int) -> dict[str, Any]:
    folder = work / f"faults-{'stream' if stream else 'whole'}"
    folder.mkdir()
    plan = build_plan(folder, ["fixed:interval=0.02"], n, 16)  # 20 ms apart: they arrive in sent order
    flags = []
    for name, value in FAULTS.items():
        flag = FAULT_FLAGS.get(name, "--" + name.replace("_", "-"))
        flags += [f"{flag}={v}" for v in (value if isinstance(value, list) else [value])]
    with run_mock_server("--profile", PROFILE, "--seed", str(seed), *flags, log_dir=folder) as mock:
        result = jb("run", "--target", mock.url, "--plan", str(plan), "--warmup", "0", "--timeout", "30",
                    "--out", "runs", "--no-progress", *([] if stream else ["--no-stream"]),
                    cwd=folder)  # fmt: skip
    must(result, "fault run")
    run = the_run(folder / "runs")
    rows = measured(run).sort_values("sent_ns")
    drawer = FaultDrawer(load_profile(PROFILE).with_changes(faults=FAULTS).faults, seed)
    draws = [drawer.draw() for _ in range(len(rows))]
    wrong: list[dict[str, Any]] = []
    kinds: Counter[str] = Counter()
    for row, drawn in zip(rows.to_dict("records"), draws, strict=True):
        expected = expected_status(drawn)
        kinds[expected[0] if expected[0] != "http_error" else f"HTTP {expected[1]}"] += 1
        http_status = None if pd.isna(row["http_status"]) else int(row["http_status"])
        got = (row["status"], http_status, row["status"] == "ok" and not pd.isna(row["output_tokens"]))
        if got != expected:
            wrong.append({"request_id": int(row["request_id"]), "expected": expected, "got": got,
                          "error": row["error"]})  # fmt: skip
    return {
        "stream": stream, **exactly_once(run, plan), "faulted": sum(1 for d in draws if d != NO_FAULTS),
        "classified": len(rows) - len(wrong), "drawn": dict(kinds), "misclassified": wrong[:20],
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ kills
@dataclass
class Progress:
    """How far a run had got, from its folder."""

    manifest: bool = False
    log: bool = False  # requests.jsonl exists (from when the folder is made: its header)
    idle: bool = False  # the idle capture before the plan is over (the manifest has its window)
    # The power stage has polled an energy reading taken after the run's clock anchor (same host: one
    # monotonic clock) into power_samples.jsonl: there is power of the run to rebuild.
    samples: bool = False
    sent: int = 0  # planned requests with a `sent` line
    rows: int = 0  # planned requests with their row
    arms: tuple[str, ...] = ()  # arms started
    power_file: bool = False
    summary: bool = False


def progress(out: Path) -> Progress:
    runs = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()] if out.is_dir() else []
    if not runs:
        return Progress()
    run, log = runs[0], runs[0] / "requests.jsonl"
    manifest = run / "manifest.json"
    samples = run / "power_samples.jsonl"
    state = Progress(manifest=manifest.is_file(), log=log.is_file(),
                     idle=manifest.is_file() and "idle" in json.loads(manifest.read_text()),
                     samples=log.is_file() and samples.is_file() and energy_after_anchor(log, samples),
                     power_file=(run / "power.parquet").is_file(),
                     summary=(run / "summary.json").is_file())  # fmt: skip
    for line in log.read_text().splitlines() if state.log else []:
        if line.startswith('{"k":"sent"') and '"id":-' not in line:  # warm-ups have negative ids
            state.sent += 1
        elif line.startswith('{"k":"row"') and '"warmup":false' in line:
            state.rows += 1
        elif line.startswith('{"k":"arm"') and "start_ns" in line:
            state.arms += (json.loads(line)["arm"],)
    return state


def energy_after_anchor(log: Path, samples: Path) -> bool:
    header = log.read_bytes().split(b"\n", 1)[0]
    try:
        anchor = json.loads(header)["anchor"]["mono_ns"]
    except ValueError:
        return False  # the header is being written
    for line in samples.read_text().splitlines()[1:]:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the line being written
        if isinstance(row, list) and row[3] == "e" and row[1] > anchor:
            return True
    return False


def wait_for(
    process: subprocess.Popen, out: Path, moment: Callable[[Progress], bool], limit_s: float
) -> bool:
    """Watch the run folder until `moment` holds (True), or the runner exits or the limit passes."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        if moment(progress(out)):
            return True
        time.sleep(0.005)
    return False


def kill_moments(n: int) -> dict[str, Callable[[Progress], bool]]:
    return {
        "in the idle capture before the plan": lambda s: s.log and not s.idle and s.samples,
        "before it sent a planned request": lambda s: s.idle and s.sent == 0,
        "mid-plan": lambda s: s.sent >= n // 2,
        "in the drain (all sent, some in flight)": lambda s: s.sent == n and s.rows < n,
        "during the report": lambda s: s.power_file and not s.summary,
    }


def kill_run(folder: Path, urls: tuple[str, str], plan: Path, moment: Callable[[Progress], bool]) -> dict:
    folder.mkdir()
    out = folder / "runs"
    args = joulebench_argv("run", "--target", urls[0], "--sidecar", urls[1], "--plan", str(plan),
                           "--idle", "3", "--out", str(out), "--no-progress")  # fmt: skip
    with subprocess_group(args, folder) as process:
        hit = wait_for(process, out, moment, 120)
        at_kill = progress(out)
        if hit:
            process.kill()  # SIGKILL: the runner gets no chance to clean up
        process.wait()
    entry: dict[str, Any] = {"hit": hit, "exit": process.returncode, "at_kill": asdict(at_kill)}
    if not at_kill.manifest:
        return entry
    run = the_run(out)
    samples = run / "power_samples.jsonl"  # what the power stage had polled when the runner died
    entry["samples_logged"] = len(samples.read_bytes().splitlines()) if samples.is_file() else 0
    recovered = jb("recover", str(run), cwd=folder)
    report = jb("report", str(run), "-q", cwd=folder)
    summary = json.loads((run / "summary.json").read_text()) if report.returncode == 0 else {}
    has_rows = (run / "requests.parquet").is_file()
    statuses: dict[str, int] = dict(Counter(measured(run)["status"])) if has_rows else {}
    return entry | exactly_once(run, plan) | {
        "recover_exit": recovered.returncode, "recover_output": (recovered.stdout + recovered.stderr)[-1500:],
        "statuses": statuses,
        "power_after_recover": (run / "power.parquet").is_file(),
        "report_exit": report.returncode,
        "report_error": report.stderr.strip()[-500:] if report.returncode else "",
        "flags": sorted({f["code"] for f in summary.get("flags", [])}),
    }  # fmt: skip


def kills(work: Path, n: int) -> list[dict]:
    (work / "kills").mkdir()
    plan = build_plan(work / "kills", ["fixed:interval=0.05"], n, 200)  # 0.2 s each: some are in flight
    with ExitStack() as stack:
        mock = stack.enter_context(run_mock_server("--profile", PROFILE, log_dir=work))
        car = stack.enter_context(simulated_sidecar(mock.url, "--interval", "0.05", log_dir=work))
        return [
            {"moment": name} | kill_run(work / "kills" / f"k{i}", (mock.url, car.url), plan, moment)
            for i, (name, moment) in enumerate(kill_moments(n).items())
        ]


def power_kill(work: Path, n: int) -> dict:
    """Two arms 2 s apart; the sidecar is SIGKILLed as the second one starts. The power stage polls the
    sidecar every second, so by then the first arm's samples are in power_samples.jsonl."""
    folder = work / "power-kill"
    folder.mkdir()
    plan = build_plan(folder, ["fixed:interval=0.05,name=first", "fixed:interval=0.05,name=second"], n, 32)
    out = folder / "runs"
    with ExitStack() as stack:
        mock = stack.enter_context(run_mock_server("--profile", PROFILE, log_dir=folder))
        car = stack.enter_context(simulated_sidecar(mock.url, "--interval", "0.05", log_dir=folder))
        args = joulebench_argv("run", "--target", mock.url, "--sidecar", car.url, "--plan", str(plan),
                               "--idle", "1", "--arm-gap", "2", "--strict", "--out", str(out),
                               "--no-progress")  # fmt: skip
        with subprocess_group(args, folder) as process:
            hit = wait_for(process, out, lambda s: "second" in s.arms, 120)
            if hit:
                car.process.kill()
            _, stderr = process.communicate(timeout=300)
    run = the_run(out)
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    arms = {a["name"]: a for a in summary.get("arms", [])}
    strict = jb("report", str(run), "-q", "--strict", cwd=folder)
    return {
        "hit": hit, "run_exit": process.returncode, "run_stderr": stderr[-1500:],
        "all_in": {name: arm["all_in"]["j_per_request"] for name, arm in arms.items()},
        "power_coverage": {name: arm["power_coverage"] for name, arm in arms.items()},
        "error_flags": sorted({f["code"] for f in summary.get("flags", []) if f["severity"] == "error"}),
        "report_strict_exit": strict.returncode,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------ inputs
def fuzz_corpus(work: Path, per_command: int) -> dict:
    """The fuzz test's derandomized examples, checked as the test checks them."""
    fuzz = load_test_module("tests/e2e/test_cli_fuzz.py")
    artifacts = fuzz.make_artifacts(work / "fuzz-artifacts")
    outcomes: list[Any] = []

    def visit(case: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="joulebench-fuzz-") as folder:
            outcomes.append(fuzz.run_case(case, Path(folder), artifacts))

    for command in sorted(fuzz.COMMANDS):
        fuzz.explore(command, per_command, visit)
    clean = [o for o in outcomes if not o.problems()]
    violations = [o for o in outcomes if o.problems()]
    return {
        "commands": len(fuzz.COMMANDS), "tried": len(outcomes),
        "one_line_error": sum(1 for o in clean if o.status == 2),
        "exit_0": sum(1 for o in clean if o.status == 0),
        "known_findings": dict(Counter(f.id for o in violations if (f := fuzz.known(o)))),
        "new_violations": [o.report() for o in violations if not fuzz.known(o)],
    }  # fmt: skip


def regression_cases(work: Path) -> dict:
    """tests/e2e/test_bad_values_one_line.py's cases, run and checked as that test does."""
    module = load_test_module("tests/e2e/test_bad_values_one_line.py")
    (mark,) = [m for m in module.test_one_line_and_nothing_left_behind.pytestmark if m.name == "parametrize"]
    held, failures = 0, []
    for i, case in enumerate(mark.args[1]):
        args, expected = getattr(case, "values", case)  # a pytest.param or a plain tuple
        folder = work / "regression" / str(i)
        folder.mkdir(parents=True)
        (folder / "prompts.jsonl").write_text(module.SURROGATE_PROMPTS)
        result = jb(*args, cwd=folder)
        lines = result.stderr.strip().splitlines()
        ok = (result.returncode == 2 and len(lines) == 1
              and lines[0].startswith("joulebench: error: " + expected)
              and [p.name for p in folder.iterdir()] == ["prompts.jsonl"])  # fmt: skip
        held += ok
        if not ok:
            failures.append({"args": list(args), "exit": result.returncode, "stderr": result.stderr[-1500:]})
    return {"tried": len(mark.args[1]), "one_line_error": held, "failures": failures}


# ------------------------------------------------------------------------------------------ secrets
def canary(label: str) -> str:
    return f"jbcanary{label}{secrets.token_hex(8)}"  # random: no file can hold it by chance


def with_userinfo(url: str, password: str) -> str:
    return url.replace("http://", f"http://jbuser:{password}@", 1)


@contextmanager
def echo_server() -> Iterator[str]:
    process = subprocess.Popen([sys.executable, str(REPO / "tests" / "e2e" / "echo_server.py")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        stop_process(process)


def ok_rows(out: Path) -> bool:
    return bool((measured(the_run(out))["status"] == "ok").any())


def secret_runs(work: Path, n: int) -> dict:
    folder = work / "secrets"
    folder.mkdir()
    plan = build_plan(folder, ["fixed:interval=0.05"], n, 4)
    places = ("target", "sidecar", "api_key", "echoed_api_key", "experiment_target", "experiment_sidecar",
              "experiment_key")  # fmt: skip
    planted = {place: canary(place.replace("_", "")) for place in places}
    outputs, used = [], {}
    with ExitStack() as stack:
        mock = stack.enter_context(run_mock_server("--profile", PROFILE, log_dir=folder))
        car = stack.enter_context(simulated_sidecar(mock.url, "--interval", "0.05", log_dir=folder))
        power = ["--sidecar", with_userinfo(car.url, planted["sidecar"])]
        if shutil.which("prometheus"):  # the real Prometheus, scraping the sidecar
            (folder / "prometheus").mkdir()
            prom = PrometheusServer(
                folder / "prometheus", jobs={"sidecar": [car.url.removeprefix("http://")]}
            )
            stack.callback(prom.stop)
            prom.wait_targets_up()
            planted["prometheus"] = canary("prometheus")
            power += ["--prometheus", with_userinfo(prom.url, planted["prometheus"])]
        target = with_userinfo(mock.url, planted["target"])
        result = jb("run", "--target", target, *power, "--plan", str(plan), "--api-key-env", "JB_CANARY_KEY",
                    "--idle", "0.5", "--out", "runs", "--no-progress",
                    cwd=folder, env={"JB_CANARY_KEY": planted["api_key"]})  # fmt: skip
        outputs += [result.stdout, result.stderr]
        used["run on the mock"] = result.returncode == 0 and ok_rows(folder / "runs")

        echo_url = stack.enter_context(echo_server())
        result = jb("run", "--target", echo_url, "--plan", str(plan), "--api-key-env", "JB_CANARY_ECHO",
                    "--out", "echo-runs", "--no-progress", cwd=folder,
                    env={"JB_CANARY_ECHO": planted["echoed_api_key"]})  # fmt: skip
        outputs += [result.stdout, result.stderr]
        # The echo server refuses a request without the key: an ok row proves the key was sent.
        used["run on the echo server"] = ok_rows(folder / "echo-runs")

        experiment = {
            "name": "secrets", "repeats": 1, "cooldown_s": 0.5, "cell_reports": False,
            "target": {"url": with_userinfo(mock.url, planted["experiment_target"]),
                       "api_key_env": "JB_CANARY_EXP"},
            "power": {"sidecar": with_userinfo(car.url, planted["experiment_sidecar"])},
            "plan": {"prompts": "synthetic", "n": n, "max_tokens": 4}, "arms": ["fixed:interval=0.05"],
        }  # fmt: skip
        (folder / "experiment.yaml").write_text(json.dumps(experiment))  # JSON is YAML
        result = jb("experiment", "run", "experiment.yaml", "--out", "experiments", cwd=folder,
                    env={"JB_CANARY_EXP": planted["experiment_key"]})  # fmt: skip
        outputs += [result.stdout, result.stderr]
        used["experiment"] = result.returncode == 0
    # What joulebench wrote: the run folders and the experiment folder, every file in them.
    searched = [
        p for top in ("runs", "echo-runs", "experiments") for p in (folder / top).rglob("*") if p.is_file()
    ]
    contents = [p.read_bytes() for p in searched] + [text.encode() for text in outputs]
    found = {
        name: sum(1 for data in contents if secret.encode() in data or basic_auth(secret) in data)
        for name, secret in planted.items()
    }
    return {
        "planted": sorted(planted), "used": used, "files_searched": len(searched),
        "bytes_searched": sum(len(data) for data in contents),
        "found_in": {k: v for k, v in found.items() if v},
        "not_found": sum(1 for v in found.values() if not v),
        "control_found": any(b"JB_CANARY_ECHO" in data for data in contents[: len(searched)]),
    }  # fmt: skip


def basic_auth(password: str) -> bytes:
    """The token userinfo travels as in an Authorization header (a log of headers would hold it)."""
    return base64.b64encode(f"jbuser:{password}".encode())


# ------------------------------------------------------------------------------------------ the table
def table(result: dict) -> list[str]:
    """Markdown rows: what was tried, and how much of it held."""
    rows = []
    for f in result["faults"]:
        drawn = ", ".join(f"{v} {k}" for k, v in sorted(f["drawn"].items()))
        rows.append((
            f"mock faults, {'streaming' if f['stream'] else 'whole responses'}: {f['planned']} requests, "
            f"{f['faulted']} drew a fault ({drawn})",
            f"{f['exactly_once']}/{f['planned']} logged exactly once; {f['classified']}/{f['planned']} "
            "with the status the mock's seeded draw says",
        ))  # fmt: skip
    for k in result["kills"]:
        if not k["hit"]:
            rows.append((f"runner SIGKILLed {k['moment']}", "not reached (the run got past it first)"))
            continue
        power = ("written before the kill" if k["at_kill"]["power_file"]
                 else "rebuilt" if k["power_after_recover"]
                 else f"**not rebuilt** ({k['samples_logged']} sample lines logged before the kill)"
                 )  # fmt: skip
        rows.append((
            f"runner SIGKILLed {k['moment']} ({k['at_kill']['sent']} of {k['planned']} sent), then "
            "`joulebench recover`",
            f"{k['exactly_once']}/{k['planned']} planned requests in the log exactly once"
            + (f", {k['unplanned_rows']} unplanned rows" if k["unplanned_rows"] else "")
            + f"; recover exit {k['recover_exit']}; power.parquet {power}; `report` exit {k['report_exit']}",
        ))  # fmt: skip
    pk = result["power_kill"]
    all_in = ", ".join(f"{arm} {'none' if v is None else f'{v:.3g} J'}" for arm, v in pk["all_in"].items())
    rows.append((
        "power sidecar SIGKILLed as the second of two arms starts",
        f"all-in J/request: {all_in or 'no summary'} (the second must be none); `--strict` exit "
        f"{pk['run_exit']} (run), {pk['report_strict_exit']} (report), 1 expected; error flags: "
        f"{', '.join(pk['error_flags']) or 'none'}",
    ))  # fmt: skip
    fz, rg = result["inputs"]["fuzz"], result["inputs"]["regression"]
    known = ", ".join(f"{k} ({v})" for k, v in sorted(fz["known_findings"].items()))
    rows.append((
        f"bad inputs: fuzz corpus, {fz['tried']} command lines over {fz['commands']} commands",
        f"{fz['one_line_error']} one-line errors, {fz['exit_0']} clean exits 0; known findings: "
        f"{known or 'none'}; new violations: {len(fz['new_violations'])}",
    ))  # fmt: skip
    rows.append(
        (
            f"bad inputs: regression cases, {rg['tried']}",
            f"{rg['one_line_error']}/{rg['tried']} one-line errors, nothing left behind",
        )
    )
    sc = result["secrets"]
    rows.append((
        f"secrets: {len(sc['planted'])} canaries planted ({', '.join(sc['planted'])})",
        f"{sc['not_found']}/{len(sc['planted'])} found nowhere in {sc['files_searched']} files and the "
        f"commands' output ({sc['bytes_searched']:,} bytes); planted ones used: "
        f"{'yes' if all(sc['used'].values()) else sc['used']}; search control found: "
        f"{'yes' if sc['control_found'] else '**no**'}",
    ))  # fmt: skip
    return ["| tried | held |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument(
        "--out", type=Path, default=RESULTS / "reliability.json", help="the JSON; the .md goes beside"
    )
    ap.add_argument(
        "--fault-requests", type=int, default=200, help="requests per fault run (streaming, whole)"
    )
    ap.add_argument("--kill-requests", type=int, default=60, help="planned requests of each killed run")
    ap.add_argument("--power-requests", type=int, default=40, help="requests per arm of the sidecar-kill run")
    ap.add_argument("--fuzz-examples", type=int, default=5, help="fuzz corpus examples per command")
    ap.add_argument("--secret-requests", type=int, default=6, help="requests per run of the secrets check")
    ap.add_argument("--seed", type=int, default=7, help="the mock's fault seed")
    args = ap.parse_args()
    started = time.monotonic()
    result: dict[str, Any] = {
        "generated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/reliability.py", *sys.argv[1:]]),
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "python": platform.python_version()},
        "sizes": {k: v for k, v in vars(args).items() if k != "out"},
        "part_seconds": {},
    }  # fmt: skip
    parts: dict[str, Callable[[Path], Any]] = {
        "faults": lambda work: [fault_run(work, args.fault_requests, s, args.seed) for s in (True, False)],
        "kills": lambda work: kills(work, args.kill_requests),
        "power_kill": lambda work: power_kill(work, args.power_requests),
        "inputs": lambda work: {
            "fuzz": fuzz_corpus(work, args.fuzz_examples),
            "regression": regression_cases(work),
        },
        "secrets": lambda work: secret_runs(work, args.secret_requests),
    }
    with tempfile.TemporaryDirectory(prefix="joulebench-reliability-") as tmp:
        for name, part in parts.items():
            began = time.monotonic()
            result[name] = part(Path(tmp))
            result["part_seconds"][name] = round(time.monotonic() - began, 1)
    result["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    md = [
        f"Figures from one run of `{result['command']}` ({result['generated_utc'][:10]}, "
        f"{result['host']['cores']} cores, {result['seconds']:.0f} s):",
        "",
        *table(result),
    ]
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
