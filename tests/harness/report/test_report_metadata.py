"""report.html says what was measured: target, model, engine, GPUs, host CPU, plan, command line, the
joulebench that ran it; a banner when the GPU was simulated (and only then); the terminal's verdict and
the figure it ranks by; no credential anywhere; plots that stay readable with many requests.

The page is read with html.parser, by the ids it gives each fact (`run-target`, ...), from real runs:
the embedded default (mock server and simulated sidecar as subprocesses), a mock and sidecar started
here behind URLs with userinfo, and synthetic run folders (run_synth.py) whose manifest names a power
source as a measured GPU's would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from contextlib import ExitStack
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from joulebench_testkit import run_joulebench, run_mock_server, simulated_sidecar
from matplotlib.backends.backend_agg import FigureCanvasAgg
from run_synth import build_run

from harness import __version__
from harness.report import plots, report_run
from harness.report.terminal import cheapest_arm
from harness.runfolder import RunFolder
from traffic.plan import load_plan

SECRET = "sk-metadata-s3cret-0123456789"
USERINFO = "alice:pw-in-the-url"
ARMS = [("fixed", "fixed:interval=0.1"), ("bursty", "bursty:size=3,intra=0.008,gap=0.3")]
PLAN_FLAGS = ["--n", "6", "--max-tokens", "8", *[a for _, spec in ARMS for a in ("--schedule", spec)]]


class Page(HTMLParser):
    """The text of every element with an id (nested ones included in their parent's) and the arms table."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.arms: list[list[str]] = []
        self._open: list[tuple[str, str | None]] = []  # (tag, id) of each open element
        self._row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("br", "img", "meta"):
            return
        self._open.append((tag, found.get("id")))
        if found.get("id"):
            self.by_id[str(found["id"])] = ""
        if tag == "tr" and found.get("class") == "arm":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append("")

    def handle_endtag(self, tag: str) -> None:
        while self._open and self._open.pop()[0] != tag:
            pass
        if tag == "tr" and self._row is not None:
            self.arms.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        for _, key in self._open:
            if key:
                self.by_id[key] += data
        if self._row is not None and self._row:
            self._row[-1] += data

    def fact(self, key: str) -> str:
        """A row of "What was measured": its value (the row's text after its label's mark)."""
        return self.by_id[f"run-{key}"].split(_MARK, 1)[1]


_MARK = "\x00"  # put between a fact's label and its value, to split the row's text there


def read_page(folder: Path) -> tuple[Page, dict, dict]:
    page = Page((folder / "report.html").read_text().replace("</th><td>", f"</th><td>{_MARK}"))
    manifest = json.loads((folder / "manifest.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    return page, manifest, summary


def only_folder(runs: Path) -> Path:
    (folder,) = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]  # not runs/latest
    return folder


def host_cpu() -> str:
    """This host's CPU model and count, read here independently of joulebench."""
    model = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    )
    return f"{model}, {os.cpu_count()} logical CPUs"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`joulebench run` with no target (mock + simulated sidecar), small, with an API key in the env."""
    cwd = tmp_path_factory.mktemp("embedded")
    result = run_joulebench(
        "run", *PLAN_FLAGS, "--idle", "0.5", "--out", "runs", cwd=cwd, env={"JOULEBENCH_API_KEY": SECRET}
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return only_folder(cwd / "runs")


@pytest.mark.slow
def test_the_embedded_report_states_what_was_measured(embedded: Path) -> None:
    page, manifest, summary = read_page(embedded)
    assert page.fact("target") == manifest["target"]["url"]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", page.fact("target"))
    assert page.fact("model") == manifest["target"]["model"] == "mock"  # the mock's one model
    assert page.fact("api") == "openai-chat (detected)"
    profile = manifest["embedded"]["mock_server"]["profile"]
    version = manifest["target"]["server"]["info"]["version"]
    assert page.fact("engine") == (
        f"joulebench mock-server, profile {profile} (embedded default; reports version {version})"
    )
    (gpu,) = manifest["power"]["sources"][0]["gpus"]
    assert page.fact("gpus") == f"1 × {gpu['name']} (GPU 0; sidecar, simulated)"
    assert page.fact("host-cpu") == host_cpu()
    header = load_plan(embedded / RunFolder.PLAN).header
    assert page.fact("plan-hash") == header.plan_hash and len(header.plan_hash) == 64
    assert page.fact("plan") == "built from flags; 12 requests, seed 0"
    assert [row[:2] for row in page.arms] == [list(arm) for arm in ARMS]
    assert shlex.join(["run", *PLAN_FLAGS, "--idle", "0.5", "--out", "runs"]) in page.fact("command-line")
    assert page.fact("joulebench") == __version__
    assert "simulator's" in page.by_id["simulated"] and "not a measurement" in page.by_id["simulated"]
    # The terminal's verdict line, word for word, and the figure it ranks by.
    verdict = cheapest_arm(summary)
    assert verdict is not None and page.by_id["verdict"] == verdict
    text = (embedded / "report.html").read_text()
    assert "The verdict ranks the arms by all-in J per successful request" in text


@pytest.mark.slow
def test_no_credential_reaches_the_page_or_the_manifest(tmp_path: Path) -> None:
    """The API key (from the environment) and URL userinfo (of the target and of the sidecar) are in
    neither file; the page shows both URLs with their userinfo replaced."""
    with ExitStack() as stack:
        mock = stack.enter_context(run_mock_server("--seed", "0", log_dir=tmp_path))
        sidecar = stack.enter_context(simulated_sidecar(mock.url, "--interval", "0.05", log_dir=tmp_path))
        target = mock.url.replace("http://", f"http://{USERINFO}@")
        power = sidecar.url.replace("http://", "http://bob:pw-of-the-sidecar@")
        result = run_joulebench(
            "run", "--target", target, "--sidecar", power, *PLAN_FLAGS, "--idle", "0.5", "--out", "runs",
            cwd=tmp_path, env={"JOULEBENCH_API_KEY": SECRET},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = only_folder(tmp_path / "runs")
    for name in ("report.html", "manifest.json"):
        text = (folder / name).read_text()
        for secret in (SECRET, USERINFO, "alice", "pw-of-the-sidecar", "bob:"):
            assert secret not in text, (name, secret)
    page, _, _ = read_page(folder)
    assert page.fact("target") == mock.url.replace("http://", "http://***@")
    redacted = sidecar.url.replace("http://", "http://***@")
    assert shlex.join(["--sidecar", redacted]) in page.fact("command-line")
    assert "simulated" in page.by_id  # the sidecar read the mock's GPU: still the simulator's figures


def test_the_command_line_is_recorded_without_secrets() -> None:
    from harness.session.provenance import command_line

    argv = ["joulebench", "run", "--target", f"http://{USERINFO}@h:1", "--api-key", SECRET,
            f"--auth-token={SECRET}", "--max-tokens", "16", "--tokenizer", "gpt2",
            "--api-key-env", "MY_KEY"]  # fmt: skip
    assert command_line(argv) == [
        "joulebench", "run", "--target", "http://***@h:1", "--api-key", "***", "--auth-token=***",
        "--max-tokens", "16", "--tokenizer", "gpt2", "--api-key-env", "MY_KEY",  # a variable's name
    ]  # fmt: skip


def _power(backend: str) -> dict:
    """A manifest `power` section as a run with a sidecar on this `backend` writes it."""
    gpu = {"gpu": "0", "name": "Synthetic GPU", "uuid": "GPU-synthetic", "samples": 1}
    source = {"kind": "sidecar", "location": "http://10.0.0.5:9400", "backend": backend, "role": "primary",
              "gpus": [gpu]}  # fmt: skip
    return {"primary": "sidecar", "gpus": None, "sources": [source]}


@pytest.mark.parametrize("backend", ["nvml", "simulated"])
def test_only_a_simulated_gpu_gets_the_banner(tmp_path: Path, backend: str) -> None:
    run = build_run(tmp_path)
    RunFolder.open(run).update_manifest(power=_power(backend))
    report_run(run)
    page, _, _ = read_page(run)
    assert ("simulated" in page.by_id) == (backend == "simulated")
    assert page.fact("gpus") == f"1 × Synthetic GPU (GPU 0; sidecar, {backend})"


def test_a_folder_without_provenance_says_so(tmp_path: Path) -> None:
    """A synthetic folder records no target, command line or power source: the page says what it lacks,
    and shows no banner (nothing says the GPU was simulated)."""
    run = build_run(tmp_path)
    report_run(run)
    page, _, _ = read_page(run)
    assert "simulated" not in page.by_id
    for key in ("target", "model", "command-line", "joulebench", "host-cpu"):
        assert page.fact(key) == "not recorded", key
    assert page.fact("gpus") == "1 × Synthetic GPU (GPU 0)"  # from the power data the join used
    assert [row[:2] for row in page.arms] == [
        ["fixed", "fixed:interval=0.5"],
        ["bursty", "bursty:size=5,gap=2.5"],
    ]


def test_mean_in_flight_is_the_time_average_of_the_count() -> None:
    # Two requests: [0, 2) and [1, 3). Bins [0, 1), [1, 2), [2, 4): 1, 2, and 1 for 1 s of 2 s.
    mean = plots.mean_in_flight(np.array([0.0, 1.0]), np.array([2.0, 3.0]), np.array([0.0, 1.0, 2.0, 4.0]))
    assert mean.tolist() == [1.0, 2.0, 0.5]


def test_many_requests_are_drawn_in_flight_and_the_legend_is_off_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past REQUEST_BARS_MAX requests (lowered here: the synthetic run has 40), the lower panel shows each
    arm's count in flight, not a bar each; the power line has POWER_POINTS points; the legend lies
    outside both axes."""
    monkeypatch.setattr(plots, "REQUEST_BARS_MAX", 10)
    monkeypatch.setattr(plots, "POWER_POINTS", 50)
    from harness.report.run_inputs import analyze_run

    inputs, analysis = analyze_run(build_run(tmp_path))
    report_run(inputs.path)
    doc = json.loads((inputs.path / "summary.json").read_text())
    fig = plots.power_timeline(analysis, doc)
    assert fig is not None
    top, bottom = fig.axes
    assert len(analysis.timeline) > 50 and len(top.lines[0].get_xdata()) == 50
    assert bottom.collections and not any(type(c).__name__ == "LineCollection" for c in bottom.collections)
    renderer = FigureCanvasAgg(fig).get_renderer()
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in (top, bottom))
    assert not top.get_legend()
