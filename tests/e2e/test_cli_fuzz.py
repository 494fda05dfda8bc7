"""Fuzz over the CLI's inputs: every command, every flag, adversarial values and damaged files.

Each example runs `joulebench COMMAND ARGS` as a user does (a `python -m harness` subprocess) in a fresh
empty folder holding only the files the example put there, and asserts the bad-input contract: exit
status 0 or 2 (foundation/errors.py: InputError is one `joulebench: error:` line and status 2), never a
traceback, and, unless it exited 0, nothing left behind. The commands and their flags are read from the
typer app, so a new command or flag is fuzzed without a change here; what a flag's values look like
(`KIND_OF`) is the only per-flag knowledge (an option missing from it gets numbers, an argument text).

Commands that would run for minutes on good input (a measured run, the servers) always get one value
that can never be valid (`poison`), so every example fails fast; the others may draw good values too,
and exit 0 then is fine. Examples are derandomized (the same ones on every run) and not shrunk (each
step would be another subprocess); the test draws a command's examples first and then runs them side by
side, one per core; a failure prints every violating command line, its output and what was left.

`KNOWN` lists the violations found and not yet fixed (the harness is another owner's): the fuzz
tolerates an outcome that matches one, and `test_known_finding` reproduces each as a strict xfail, so
fixing one fails that test until its entry is removed. benchmarks/reliability.py runs this corpus too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from joulebench_testkit import joulebench_argv, one_line_error, run_dirs, side_by_side

from harness.cli import _load_commands
from harness.cli.app import app

pytestmark = pytest.mark.slow

TIMEOUT_S = 60.0  # a bad input fails in seconds; one that does not is a finding of its own
# Examples per command (about 1.5 s each on 2 cores): the run gets most, it has most flags.
EXAMPLES = {"run": 24, "plan build": 14, "mock-server": 10}
DEFAULT_EXAMPLES = 6
# Good input would start a server or a measured run that lasts minutes: always poisoned.
LONG_RUNNING = {
    "run",
    "mock-server",
    "sidecar",
    "serve vllm",
    "serve tgi",
    "experiment run",
    "experiment resume",
    "shape",
}
SKIPPED_FLAGS = {"--help", "--version"}


# ------------------------------------------------------------------------------------------ commands
@dataclass(frozen=True)
class Param:
    name: str  # the long option ("--target"), or the argument's name ("runs")
    switch: tuple[str, ...]  # a boolean flag's spellings ("--stream", "--no-stream"); empty for a value
    many: bool  # repeatable option, or an argument taking several values
    argument: bool
    required: bool


def commands() -> dict[str, list[Param]]:
    """Every leaf command of the typer app ("plan build": its parameters), read from the app."""
    _load_commands([])
    found: dict[str, list[Param]] = {}

    def walk(command: object, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])
        if not hasattr(command, "commands"):
            found[" ".join(path)] = [
                Param(
                    name=p.opts[0] if p.param_type_name == "option" else p.name,
                    switch=(*p.opts, *p.secondary_opts) if getattr(p, "is_flag", False) else (),
                    many=bool(getattr(p, "multiple", False)) or p.nargs == -1,
                    argument=p.param_type_name == "argument",
                    required=bool(p.required),
                )
                for p in command.params  # type: ignore[attr-defined]
                if not set(p.opts) & SKIPPED_FLAGS
            ]

    walk(typer.main.get_command(app), [])
    return found


COMMANDS = commands()

# What a parameter's values look like, by command ("*": any) and name; the rest are numbers or text.
KIND_OF = {
    ("*", "--target"): "url", ("*", "--sidecar"): "url", ("*", "--prometheus"): "url", ("*", "--dcgm"): "url",
    ("*", "--simulate-from"): "url", ("*", "--docker-host"): "url_later", ("*", "--url"): "url_later",
    ("*", "--server-metrics"): "url_later", ("*", "--upstream"): "url_later",
    ("plan build", "--out"): "plan_out", ("*", "--out"): "out", ("compare", "--json"): "out",
    ("*", "--ready-file"): "out", ("*", "--log"): "out",
    ("*", "--plan"): "plan", ("plan describe", "file"): "plan", ("*", "--config"): "plan_yaml",
    ("*", "--prompts"): "prompts", ("*", "--tokenizer"): "json", ("*", "--server-info"): "json",
    ("*", "--profile"): "profile", ("experiment run", "file"): "experiment_yaml",
    ("experiment resume", "folder"): "experiment_folder",
    ("experiment report", "folder"): "experiment_folder",
    ("*", "runs"): "run_folder", ("*", "run"): "run_folder",
    ("*", "--schedule"): "schedule", ("*", "--rate"): "rates", ("*", "--rates"): "rates",
    ("*", "--policy"): "policy", ("*", "--shard"): "shard", ("*", "--field"): "field", ("*", "--set"): "set",
    ("*", "--env"): "env", ("*", "--gpus"): "gpus", ("*", "--host"): "host", ("*", "--metrics-host"): "host",
    ("*", "--python"): "path_in", ("*", "--launcher"): "path_in",
    ("*", "--model"): "text", ("*", "--model-name"): "text", ("*", "--api-key-env"): "text",
    ("*", "--power-selector"): "text", ("*", "--server-container"): "text", ("*", "name"): "text",
    ("*", "--baseline"): "text", ("*", "--idle"): "idle",
    ("*", "--flavour"): "choice", ("*", "--backend"): "choice", ("*", "--transport"): "choice",
    ("*", "--order"): "choice", ("*", "--primary"): "choice", ("*", "--method"): "choice",
    ("*", "--conversation"): "choice", ("*", "--log-level"): "choice", ("*", "--http"): "choice",
    ("*", "--loop"): "choice",
}  # fmt: skip


def kind_of(command: str, param: Param) -> str:
    if (command, param.name) in KIND_OF:
        return KIND_OF[(command, param.name)]
    if param.argument or ("*", param.name) in KIND_OF:
        return KIND_OF.get(("*", param.name), "text")
    return "number"  # every other option of the app takes a number (seconds, counts, rates, seeds)


# ------------------------------------------------------------------------------------------ inputs
@dataclass(frozen=True)
class File:
    """An input the example puts in its folder first: `content` (bytes; b"->TARGET" a symbolic link;
    None a folder), or a copy of a good artifact (`copy`: "run" or "plan") with `edits` applied to it:
    (file in it, what `damage` does, how much)."""

    name: str
    content: bytes | None = None
    copy: str | None = None
    edits: tuple[tuple[str, str, float], ...] = ()


@dataclass(frozen=True)
class Arg:
    """One value on the command line and the files it names. "{p}" in both becomes a prefix unique to
    the value's position, so two values never share a file."""

    value: str
    files: tuple[File, ...] = ()


@dataclass(frozen=True)
class Case:
    command: str
    argv: tuple[str, ...]  # after the command's words
    files: tuple[File, ...]

    def shell(self) -> str:
        return shlex.join(["joulebench", *self.command.split(), *self.argv])

    def inputs(self) -> str:
        """The files as the example made them: bytes (cut short), a folder, a damaged good artifact."""
        return "; ".join(
            f"{f.name}: "
            + (f"the good {f.copy}, damaged: {list(f.edits)}" if f.copy else "a folder" if f.content is None
               else repr(f.content[:120]))
            for f in self.files
        )  # fmt: skip


CLOSED_URL = "http://127.0.0.1:1"  # nothing listens on port 1 here: a refused connection, at once
CLOSED = CLOSED_URL.removeprefix("http://")

URL_MALFORMED = [
    "", " ", "http://", "http://127.0.0.1:99999", "http://127.0.0.1:-1", "http://127.0.0.1:port",
    "http://[::1", "ftp://127.0.0.1:1", "127.0.0.1:1", "http://exa mple:1", f"{CLOSED_URL}\r\nx: y", f"http://:@{CLOSED}/",
    f"http://%zz@{CLOSED}", f"{CLOSED_URL}/v1?q=\udcff", "unix:///nope.sock", "http://\u0661.1:1",
    "tcp://127.0.0.1:1",
]  # fmt: skip
# Simple kinds: (values no command may accept, values that may be fine). Only parameters of these
# kinds can be the poison of a long-running command.
SIMPLE: dict[str, tuple[list[str], list[str]]] = {
    "number": (
        ["", " ", "abc", "nan", "-nan", "NaN", "inf", "-inf", "1e309", "-1e309", "0x10", "1 2", "½",
         "\u22121"],
        ["0", "-1", "1", "-0", "1.5", "1e-320", "99999999999999999999", "-99999999999999999999", "٣", " 7 ",
         "2", "0.5", "10", "100"],
    ),
    # Contacted before anything runs (--target, the power sources): a refused connection is bad too.
    "url": ([*URL_MALFORMED, CLOSED_URL, f"http://u:pw@{CLOSED}", "http://0:0", f"{CLOSED_URL}/%"], []),
    # Reached only later, or only with another flag; a server that is down is a warning by design.
    "url_later": (URL_MALFORMED, [CLOSED_URL, "http://0:0"]),
    "schedule": (
        ["", ":", "poisson", "poisson:rate=", "poisson:rate=nan", "poisson:rate=-1", "poisson:rate=1e309",
         "fixed:gap=-1", "fixed:interval=0", "fixed:interval=-1", "fixed:", "fixed:=1", "fixed:interval",
         "fixed:interval=1,interval=2", "uniform:low=2,high=1", "uniform:low=1",
         "bursty:size=0,intra=0,gap=1", "bursty:size_min=5,size_max=1,intra=0,gap=1", "gamma:rate=1,cv=0",
         "concurrency:n=0", "nosuch:x=1",
         "poisson:rate=5,name=", "trace:path={p}missing.csv", "poisson:rate=5,bogus=1", "\udcff:rate=1"],
        ["poisson:rate=5", "fixed:interval=0.5", "uniform:low=0.1,high=0.5", "concurrency:n=2",
         "bursty:size=3,intra=0.01,gap=1", "fixed:interval=1e-300", "poisson:rate=5,name=é 🙂",
         "concurrency:n=1e9"],
    ),
    "policy": (
        ["", ":", "window", "window:period=", "window:period=-1", "window:period=nan", "nosuch:x=1",
         "concurrency-cap:c=0", "concurrency-cap:c=abc", "window:period=1,bogus=2"],
        ["window:period=1", "concurrency-cap:c=4"],
    ),
    "rates": (["", ",", "1,,2", "1,1", "1,-1", "2,nan", "0", "-1", "inf", "abc", "1e309"], ["5", "1,2"]),
    "shard": (["-1/2", "0/0", "a/b", "1", "/", "2/1", "0/-1", ""], ["0/1", "1/2", "0/99999999999999999999"]),
    "field": (["=x", "nope=x"], ["prompt=", "x=y=z", "messages=nope", "id=", "prompt=text", ""]),
    "set": (
        ["a.b=1", "nope", "faults.error_rate=2", "x=", "=1", ".=.", "seed=\udcff"],
        ["scheduler.max_num_seqs=64", "gpu.idle_w=NaN", "faults.spike_s=1e999", "repeats=0", "arms=[]",
         "target=", "stop.half_width=-1"],
    ),
    "env": (["=B", "A", ""], ["A=B", "A=\udcff", "PATH="]),
    "gpus": (["-1", "a", ",", "none"], ["all", "", "0,0", "0,", "99999999999999999999", "0-3"]),
    "host": (["", "256.1.1.1", "exa mple", "[::1]", "\udcff", "1.2.3.4:80"], ["::1", "0.0.0.0", "localhost"]),
    "choice": (
        ["", "nope", "AUTO", "\udcff"],
        ["vllm", "tgi", "time", "tokens", "random", "latin", "fixed", "httpx", "h11", "sidecar", "dcgm",
         "openai-chat", "full", "debug", "off", "auto"],
    ),
    "idle": (["", "-1", "nan", "nope"], ["mean", "before", "after", "min", "none", "0", "5"]),
    "text": (
        [],
        ["", " ", "\t", "é", "🙂", "\u202eevil", "a\u0301", "\x1b[31mred", "\x07bell", "line\nbreak", "cr\r",
         "\udcff", "x" * 5000, "--", "-", "../..", "${HOME}", "%s%n", "'\"", "embedded", "all"],
    ),
}  # fmt: skip
FILE_KINDS = {"out", "plan_out", "path_in", "plan", "prompts", "json", "profile", "plan_yaml",
              "experiment_yaml", "experiment_folder", "run_folder"}  # fmt: skip
BAD_KINDS = {kind for kind, (bad, _) in SIMPLE.items() if bad} | FILE_KINDS

PROMPTS_JSONL = [
    b"", b"\n", b"garbage\n", b'{"prompt": "hi \\ud800 there"}\n', b'{"prompt": "ok"}\n\xff\xfe\n',
    b'\xef\xbb\xbf{"prompt": "bom"}\n', b'{"prompt": ""}\n', b'{"prompt": null}\n', b'{"prompt": 5}\n',
    b"[1, 2]\n", b'{"prompt": "a"}\n{"prompt": "b"', b'{"messages": [{"role": "user"}]}\n',
    b'{"messages": "x"}\n', b'{"_provenance": 1}\n', b'{"prompt": "nul\x00byte"}\n', b"[" * 100_000 + b"\n",
    b'{"prompt": "' + b"w " * 200_000 + b'"}\n', b'{"prompt": "fine"}\r\n' * 3,
    b'{"prompt": "a", "prompt": "b"}\n', b'{"prompt": NaN}\n',
]  # fmt: skip
PROMPTS_CSV = [b"", b"prompt\n", b"a,b\n1", b'prompt\n"unterminated\n', b"prompt\n\xff\xfe\n",
               b"prompt\nhi\x00\n", b"prompt,prompt\nx,y\n", b"prompt\nfine\n"]  # fmt: skip
PROMPTS_JSON = [b"", b"{", b"[]", b"{}", b'[{"prompt": "\\ud800"}]', b'[{"prompt": 1e999}]', b"[" * 100_000,
                b'[{"prompt": "fine"}]', b"null"]  # fmt: skip
JSON_DOCS = [b"", b"{", b"[]", b"null", b'{"a": NaN}', b'{"version": "\\ud800"}', b"[" * 100_000, b"\xff\xfe",
             b'"text"', b'{"model": {"type": "BPE", "vocab": {}, "merges": []}}',
             b'{"gpu": {"idle_w": -1}}']  # fmt: skip
YAML_BAD = [b"", b"a: [", b"- 1\n", b"nosuch: 1\n", b"n: -1\n", b"schedules: poisson:rate=5\n",
            b"schedules: []\n", b"prompts: 5\n", b"n: .nan\n", b"max_tokens: 1e309\n", b"\xff\xfe\x00",
            b'prompts: "\\ud800"\n', b"a: &a [*a]\n", b"n: !!python/object:os.system x\n",
            b"? [a]\n: 1\n"]  # fmt: skip
YAML_OTHER = [b"schedules: [fixed:interval=0.5]\nn: 3\n", b"n: 1\nn: 2\n"]
# An experiment that would run but for its target, which refuses connections: changes to it are the fuzz.
EXPERIMENT_BASE = {"target": CLOSED_URL, "arms": ["poisson:rate=5"], "plan": {"n": 2}, "repeats": 1}
EXPERIMENT_FIELDS = ["target", "arms", "plan", "repeats", "rates", "order", "seed", "cooldown_s", "stop",
                     "metric", "level", "power", "run", "steady_state", "nosuch", "strict",
                     "name"]  # fmt: skip
YAML_VALUES = [None, "", -1, 0, float("nan"), float("inf"), 1e300, "\udcff", [], {}, [None], "<drop>",
               f"http://u:canary-pw@{CLOSED}", {"sidecar": CLOSED_URL}, ["poisson:rate="],
               10**30]  # fmt: skip
RUN_FILES = ["manifest.json", "plan.parquet", "requests.jsonl", "requests.parquet", "power.parquet",
             "power_samples.jsonl", "summary.json", "energy.parquet", "server_metrics.parquet"]  # fmt: skip
EDITS = ["pages", "drop_column", "delete", "truncate", "garbage", "empty", "folder", "append_junk",
         "surrogate", "schema", "drop_line"]  # fmt: skip


def _file(name: str, contents: list[bytes]) -> st.SearchStrategy[Arg]:
    return st.sampled_from(contents).map(lambda c: Arg("{p}" + name, (File("{p}" + name, c),)))


def _not_a_file(extension: str) -> st.SearchStrategy[Arg]:
    """Missing, a folder, under a file, a dangling link, a name too long: nothing a command can read."""
    return st.one_of(
        st.sampled_from(["", ".", "/", "{p}missing" + extension, "/proc/nope" + extension,
                         "x" * 300 + extension, "{p}\udcffname" + extension]).map(Arg),
        st.just(Arg("{p}folder" + extension, (File("{p}folder" + extension),))),
        st.just(Arg("{p}file.txt/child" + extension, (File("{p}file.txt", b"x"),))),
        st.just(Arg("{p}link" + extension, (File("{p}link" + extension, b"->{p}missing"),))),
    )  # fmt: skip


def _damaged_run(name: str, min_edits: int) -> st.SearchStrategy[Arg]:
    edit = st.tuples(st.sampled_from(RUN_FILES), st.sampled_from(EDITS), st.floats(0.0, 1.0))
    return st.lists(edit, min_size=min_edits, max_size=2).map(
        lambda edits: Arg("{p}" + name, (File("{p}" + name, copy="run", edits=tuple(edits)),))
    )


def _plan_copy(truncate_at: float | None) -> Arg:
    edits = () if truncate_at is None else (("", "truncate", truncate_at),)
    return Arg("{p}plan.parquet", (File("{p}plan.parquet", copy="plan", edits=edits),))


def _experiment_document(changes: dict) -> bytes:
    doc = {k: v for k, v in {**EXPERIMENT_BASE, **changes}.items() if v != "<drop>"}
    return json.dumps(doc, ensure_ascii=False).encode(errors="surrogatepass")  # JSON is YAML


def _experiment_yaml(bad: bool) -> st.SearchStrategy[bytes]:
    # "embedded" would run for real: only a non-poison value may bring it (with a poison elsewhere).
    values = YAML_VALUES if bad else [*YAML_VALUES, "embedded"]
    changed = st.dictionaries(
        st.sampled_from(EXPERIMENT_FIELDS), st.sampled_from(values), min_size=1, max_size=3
    )
    return st.one_of(st.sampled_from(YAML_BAD), changed.map(_experiment_document))


def value(kind: str, bad: bool = False) -> st.SearchStrategy[Arg]:
    """Values of one kind; `bad`: only ones no command may accept."""
    if kind in SIMPLE:
        never, maybe = SIMPLE[kind]
        return st.sampled_from(never if bad else never + maybe).map(Arg)
    good: list[st.SearchStrategy[Arg]] = []
    if kind == "out":
        files = (File("{p}file.txt", b"x"),)
        pool = [
            st.sampled_from(["x" * 300, "/proc/nope/out"]).map(Arg),
            st.just(Arg("{p}file.txt/child", files)),
        ]
        good = [
            st.sampled_from(["{p}out", "{p}out.parquet", "{p}out.json", "", "{p}out.txt"]).map(Arg),
            st.just(Arg("{p}existing", (File("{p}existing", b"a file where a folder may be meant"),))),
        ]
    elif kind == "plan_out":  # half the time a good name, so that the other flags get checked too
        folder = (File("{p}folder.parquet"),)
        pool = [
            st.sampled_from(
                ["x" * 300 + ".parquet", "/proc/nope/p.parquet", "{p}missing/p.parquet", "p.txt"]
            ).map(Arg),
            st.just(Arg("{p}file.txt/child.parquet", (File("{p}file.txt", b"x"),))),
            st.just(Arg("{p}folder.parquet", folder)),
        ]
        good = [st.just(Arg("{p}plan.parquet"))] * len(pool)
    elif kind == "path_in":
        pool = [_not_a_file(""), _file("junk", [b"", b"#!/bin/false\n"])]
    elif kind == "plan":
        pool = [
            _not_a_file(".parquet"),
            _file("plan.parquet", [b"", b"PAR1", b"PAR1\x00\x00PAR1", b"garbage"]),
            st.floats(0.0, 0.999).map(_plan_copy),
        ]
        good = [st.just(_plan_copy(None))]
    elif kind == "prompts":
        pool = [
            _not_a_file(".jsonl"),
            _file("prompts.jsonl", PROMPTS_JSONL),
            _file("prompts.csv", PROMPTS_CSV),
            _file("prompts.json", PROMPTS_JSON),
            _file("prompts.parquet", [b"", b"PAR1garbage"]),
            _file("prompts.txt", [b"hello\n"]),
            st.sampled_from(
                [
                    "synthetic:mean=-1",
                    "synthetic:dist=nope",
                    "synthetic:cv=nan",
                    "synthetic:",
                    "hf:",
                    "hf:nosuch/dataset",
                    "hf:a,split=",
                    "synthetic:max=1,min=5",
                ]
            ).map(Arg),
        ]
        good = [st.sampled_from(["synthetic", "synthetic:dist=fixed,mean=3"]).map(Arg)]
    elif kind in ("json", "profile"):
        pool = [_not_a_file(".json"), _file("doc.json", JSON_DOCS[:9])]
        good = [_file("doc.json", JSON_DOCS[9:])] + (
            [st.just(Arg("synthetic-fast"))] if kind == "profile" else []
        )
    elif kind == "plan_yaml":
        pool = [_not_a_file(".yaml"), _file("plan.yaml", YAML_BAD)]
        good = [_file("plan.yaml", YAML_OTHER)]
    elif kind == "experiment_yaml":
        document = _experiment_yaml(bad).map(
            lambda c: Arg("{p}experiment.yaml", (File("{p}experiment.yaml", c),))
        )
        pool = [_not_a_file(".yaml"), document]
    elif kind == "experiment_folder":
        exp = _experiment_yaml(bad).map(
            lambda c: Arg("{p}exp", (File("{p}exp"), File("{p}exp/experiment.yaml", c)))
        )
        pool = [_not_a_file(""), _damaged_run("run", 0), exp]
    elif kind == "run_folder":
        pool = [_not_a_file(""), _damaged_run("run", 1)]
        good = [_damaged_run("run", 0)]
    else:
        raise AssertionError(f"no values for kind {kind!r}")  # a KIND_OF entry without a pool
    return st.one_of(pool if bad else pool + good)


@st.composite
def cases(draw: st.DrawFn, command: str) -> Case:
    params = COMMANDS[command]
    optional = [p for p in params if not p.required]
    # A few flags at a time, so that one bad value is often alone among good ones and gets past the
    # first check; required ones always, or every example would stop at click's "missing option".
    chosen = [p for p in params if p.required]
    if optional:
        chosen += draw(st.lists(st.sampled_from(optional), max_size=4, unique=True))
    poisons = [p for p in params if not p.switch and kind_of(command, p) in BAD_KINDS]
    poison = draw(st.sampled_from(poisons)) if command in LONG_RUNNING else None
    if poison is not None and poison not in chosen:
        chosen.append(poison)
    args: list[list[Arg]] = []
    for param in draw(st.permutations(chosen)):
        if param.switch:
            args.append([Arg(draw(st.sampled_from(param.switch)))])
            continue
        count = draw(st.integers(1, 3)) if param.many else 1
        values = [draw(value(kind_of(command, param), bad=param is poison)) for _ in range(count)]
        args.append(values if param.argument else [a for v in values for a in (Arg(param.name), v)])
    extra = draw(st.sampled_from([[]] * 9 + [[Arg("--no-such-flag")], [Arg("stray")], [Arg("--")]]))
    flat = [arg for group in args for arg in group] + extra
    argv, files = [], []
    for position, arg in enumerate(flat):
        prefix = f"a{position}_"
        argv.append(arg.value.replace("{p}", prefix))
        files += [
            File(f.name.replace("{p}", prefix),
                 f.content.replace(b"{p}", prefix.encode()) if f.content else f.content, f.copy, f.edits)
            for f in arg.files
        ]  # fmt: skip
    return Case(command, tuple(argv), tuple(files))


# ------------------------------------------------------------------------------------------ running
@dataclass(frozen=True)
class Outcome:
    case: Case
    status: int | None  # None: killed at TIMEOUT_S
    stdout: str
    stderr: str
    left: tuple[str, ...]  # paths that were not there before the command
    seconds: float

    def problems(self) -> list[str]:
        """What breaks the contract; empty when it held."""
        found = []
        if self.status is None:
            found.append(f"still running after {TIMEOUT_S:.0f} s")
        if "Traceback" in self.stdout + self.stderr:
            found.append("a traceback")
        if self.status not in (0, None):
            try:
                one_line_error(self.stderr, self.status)
            except AssertionError:
                found.append(f"exit status {self.status}, stderr not one `joulebench: error:` line")
            if self.left:
                found.append(f"left behind: {', '.join(self.left[:5])}")
        return found

    def report(self) -> str:
        text = (
            f"$ {self.case.shell()}\n(in a folder holding: {self.case.inputs()})\n"
            f"exit status {self.status} after {self.seconds:.1f} s; problems: {self.problems()}\n"
            f"--- stdout\n{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )
        return text.encode(errors="backslashreplace").decode()  # raw argv bytes as \\udcff


@dataclass(frozen=True)
class Artifacts:
    """Good inputs the damaged ones are made from: a run folder from a real (embedded) run."""

    run: Path

    @property
    def plan(self) -> Path:
        return self.run / "plan.parquet"


def make_artifacts(folder: Path) -> Artifacts:
    """A small real run on the embedded stack (about 10 s)."""
    folder.mkdir(parents=True, exist_ok=True)
    status, stdout, stderr = run_command(
        ["run", "--prompts", "synthetic", "--schedule", "fixed:interval=0.05", "--n", "4", "--max-tokens",
         "4", "--idle", "1", "--no-progress", "--out", "runs"], folder, timeout_s=300,
    )  # fmt: skip
    assert status == 0, stdout[-2000:] + stderr[-3000:]
    (run,) = run_dirs(folder / "runs")
    return Artifacts(run=run)


def run_command(args: list[str], cwd: Path, timeout_s: float = TIMEOUT_S) -> tuple[int | None, str, str]:
    """`joulebench ARGS` in its own process group, so that a command still running at the timeout is
    killed with everything it started (an embedded mock server, a sidecar): (exit status, None if it
    was killed; stdout; stderr)."""
    # hf: examples must fail at once and locally: no network here, and none should be asked for.
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        joulebench_argv(*args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout_s)
        status: int | None = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        status = None
    return status, out.decode(errors="replace"), err.decode(errors="replace")


def materialise(files: tuple[File, ...], folder: Path, artifacts: Artifacts) -> None:
    for f in files:
        path = folder / f.name
        if path.exists() or path.is_symlink():
            continue  # two values naming one file: the first one made it
        path.parent.mkdir(parents=True, exist_ok=True)
        if f.copy is not None:
            source = artifacts.run if f.copy == "run" else artifacts.plan
            (shutil.copytree if source.is_dir() else shutil.copyfile)(source, path)
            for name, edit, amount in f.edits:
                damage(path / name if name else path, edit, amount)
        elif f.content is None:
            path.mkdir()
        elif f.content.startswith(b"->"):
            path.symlink_to(f.content[2:].decode())
        else:
            path.write_bytes(f.content)


def damage(path: Path, edit: str, amount: float) -> None:
    """One kind of damage to one file of a good artifact (a crash, a full disk, a hand edit)."""
    if path.is_dir() and edit not in ("delete", "folder"):
        return  # an earlier edit made it a folder: there are no bytes to damage
    data = path.read_bytes() if path.is_file() else b""
    if edit == "delete" or edit == "folder":
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        if edit == "folder":
            path.mkdir()
    elif edit == "truncate":
        path.write_bytes(data[: int(len(data) * amount)])
    elif edit == "garbage":
        cut = int(len(data) * amount)
        path.write_bytes(data[:cut] + b"\xff\x00garbage\x00" + data[cut + 12 :])
    elif edit == "empty":
        path.write_bytes(b"")
    elif edit == "append_junk":
        path.write_bytes(data + b'{"kind": "row", "record": {"request_id": "x"}}\n{not json\n')
    elif edit == "surrogate":
        path.write_bytes(data.replace(b'"', b'"\\ud800', 1))
    elif edit == "drop_line":
        lines = data.splitlines(keepends=True)
        del lines[int(len(lines) * amount) : int(len(lines) * amount) + 1]
        path.write_bytes(b"".join(lines))
    elif edit == "pages" and data.endswith(b"PAR1"):  # a Parquet file's column data, footer intact
        footer = int.from_bytes(data[-8:-4], "little")
        at = 4 + int((len(data) - 12 - footer) * amount)
        path.write_bytes(data[:at] + b"\xff" * 7 + data[at:])  # every later column chunk moves
    elif edit == "drop_column" and data.endswith(b"PAR1"):  # a file of another version: a column less
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(table.column_names[int(amount * (table.num_columns - 1))]), path)
    elif edit == "schema":
        path.write_bytes(re.sub(rb'"schema_version": \d+', b'"schema_version": 99', data, count=1))


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} | {
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_symlink()
    }


def run_case(case: Case, folder: Path, artifacts: Artifacts) -> Outcome:
    """Run one example in `folder` (empty, made if missing): its inputs first, then the command."""
    folder.mkdir(parents=True, exist_ok=True)
    materialise(case.files, folder, artifacts)
    before = snapshot(folder)
    started = time.monotonic()
    status, stdout, stderr = run_command([*case.command.split(), *case.argv], folder)
    seconds = time.monotonic() - started
    left = tuple(sorted(snapshot(folder) - before))
    return Outcome(case, status, stdout, stderr, left, seconds)


# ------------------------------------------------------------------------------------------ findings
@dataclass(frozen=True)
class Finding:
    """A violation found by this fuzz and left to the harness' owner: how to recognise it, and one
    command line that reproduces it."""

    id: str
    what: str
    matches: Callable[[Outcome], bool]
    reproduce: Case


KNOWN: list[Finding] = []  # every finding recorded here so far is fixed (issue 18)
# How often a finding that shows only now and then is tried before its reproducer gives up (by id).
ATTEMPTS: dict[str, int] = {}


class StillFound(Exception):
    """A known finding reproduced: what its strict xfail expects until the harness is fixed."""


def known(outcome: Outcome) -> Finding | None:
    return next((f for f in KNOWN if f.matches(outcome)), None)


def explore(command: str, examples: int, visit: Callable[[Case], None]) -> None:
    """`visit` each of the command's examples: the same ones, in the same order, on every call (the
    test and benchmarks/reliability.py share them); an exception in `visit` fails with the example."""

    @settings(
        max_examples=examples,
        derandomize=True,  # the same examples on every run: CI stays stable, a failure reproduces
        database=None,
        deadline=timedelta(seconds=TIMEOUT_S + 30),  # the subprocess' own limit reports first
        phases=(Phase.explicit, Phase.generate),  # no shrinking: every step would be a subprocess
        suppress_health_check=[HealthCheck.too_slow],
        print_blob=True,
    )
    @given(case=cases(command))
    def example(case: Case) -> None:
        visit(case)

    example()


# ------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    return make_artifacts(tmp_path_factory.mktemp("artifacts"))


def examples(command: str, count: int) -> list[Case]:
    """The command's examples, the ones `explore` visits, in its order (drawing them runs nothing)."""
    drawn: list[Case] = []
    explore(command, count, drawn.append)
    return drawn


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_input_is_one_line_and_leaves_nothing(command: str, artifacts: Artifacts) -> None:
    def outcome(case: Case) -> Outcome:
        with tempfile.TemporaryDirectory(prefix="joulebench-fuzz-") as folder:
            return run_case(case, Path(folder), artifacts)

    # Each example is a subprocess in a folder of its own; they share only the artifacts, read-only.
    outcomes = side_by_side(outcome, examples(command, EXAMPLES.get(command, DEFAULT_EXAMPLES)))
    violations = [o.report() for o in outcomes if o.problems() and known(o) is None]
    assert not violations, f"{len(violations)} of {len(outcomes)} examples:\n\n" + "\n\n".join(violations)


@pytest.mark.parametrize(
    "finding",
    [
        pytest.param(f, id=f.id, marks=pytest.mark.xfail(strict=True, raises=StillFound, reason=f.what))
        for f in KNOWN
    ],
)
def test_known_finding(finding: Finding, artifacts: Artifacts, tmp_path: Path) -> None:
    """Fails while the finding stands (xfail); passes, failing the strict xfail, once it is fixed."""
    for attempt in range(ATTEMPTS.get(finding.id, 1)):
        outcome = run_case(finding.reproduce, tmp_path / str(attempt), artifacts)
        if outcome.problems():
            if finding.matches(outcome):
                raise StillFound(outcome.report())
            raise AssertionError(f"{finding.id}: another problem than the one recorded\n{outcome.report()}")
