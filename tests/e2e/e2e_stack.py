"""Readers for what a `joulebench run` leaves behind, shared by the end-to-end tests (the processes
themselves come from tests/joulebench_testkit.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path


def run_folder(result: subprocess.CompletedProcess, cwd: Path) -> Path:
    """The run folder a `joulebench run` names in its last line (`completed: runs/<run_id>`)."""
    lines = result.stdout.strip().splitlines()
    match = re.search(r"^\w+: (\S+)$", lines[-1]) if lines else None
    assert match, result.stdout[-2000:] + result.stderr[-2000:]
    return cwd / match.group(1)


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def report_summary(folder: Path) -> dict:
    """The summary embedded in report.html (what the page's numbers are rendered from)."""
    page = (folder / "report.html").read_text()
    match = re.search(r'<script type="application/json" id="joulebench-summary">(.*?)</script>', page, re.S)
    assert match, "report.html embeds its summary"
    return json.loads(match.group(1).replace("<\\/", "</"))


def flag_codes(doc: dict) -> set[str]:
    return {f["code"] for f in doc["flags"]}


def output(result: subprocess.CompletedProcess) -> str:
    """The tail of both streams, for assertion messages."""
    return result.stdout[-3000:] + "\n---- stderr ----\n" + result.stderr[-3000:]
