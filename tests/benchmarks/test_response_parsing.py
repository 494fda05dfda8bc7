"""benchmarks/response_parsing.py: both parsers read the same body, and the committed figures are the
ones the docs quote."""

from __future__ import annotations

import json
import subprocess
import sys

from joulebench_testkit import REPO

RESULTS = REPO / "benchmarks" / "results"


def test_a_short_run_writes_what_it_prints(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "response_parsing.py"), "--tokens", "4,32",
         "--responses", "5", "--rounds", "2", "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    doc = json.loads((tmp_path / "response_parsing.json").read_text())
    assert [r["tokens"] for r in doc["rows"]] == [4, 32]
    assert all(r["h11_us"] > 0 and r["httptools_us"] > 0 for r in doc["rows"])
    assert (tmp_path / "response_parsing.md").read_text() == done.stdout


def test_the_docs_quote_the_committed_ratios() -> None:
    rows = json.loads((RESULTS / "response_parsing.json").read_text())["rows"]
    md = (RESULTS / "response_parsing.md").read_text()
    for r in rows:
        assert f"| {r['tokens']} | {r['h11_us']:.1f} | {r['httptools_us']:.1f} | {r['ratio']:.1f} |" in md
    low, high = min(r["ratio"] for r in rows), max(r["ratio"] for r in rows)
    said = f"{low:.0f}–{high:.1f} times"
    assert said in " ".join((REPO / "docs" / "runner.md").read_text().split())
    sixteen = next(r for r in rows if r["tokens"] == 16)
    assert f"{sixteen['ratio']:.1f} times" in (REPO / "docs" / "runner.md").read_text()
    code = (REPO / "harness" / "backends" / "sender_transport.py").read_text()
    assert f"{low:.0f}-{high:.1f} times" in code and f"{sixteen['h11_us'] / 1e3:.2f} of a core" in code


def test_bad_arguments_are_one_line_naming_the_flag() -> None:
    for args, flag in ((["--tokens", "abc"], "--tokens"), (["--responses", "0"], "--responses"),
                       (["--rounds", "0"], "--rounds"), (["--tokens", "16,-1"], "--tokens")):  # fmt: skip
        done = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "response_parsing.py"), *args],
            capture_output=True, text=True,
        )  # fmt: skip
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.splitlines()[-1].startswith(f"response_parsing.py: error: {flag}")
