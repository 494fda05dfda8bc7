#!/usr/bin/env python3
"""The type check: mypy (configured in pyproject.toml) against a baseline that may only shrink.

    python scripts/typecheck.py            fail on any error the baseline does not list, and on any
                                           baseline entry that no longer occurs (take it out)
    python scripts/typecheck.py --shrink   rewrite the baseline without the entries that no longer
                                           occur; it never adds one

An entry is `path: [code] message` with the line number left out, so moving code does not churn the
baseline; an entry that occurs twice is listed twice. The core modules (pyproject.toml's strict
override) may have no entries at all: one there, even added by hand, fails the check.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "mypy-baseline.txt"
_ERROR = re.compile(r"^(?P<path>[^:]+):\d+(?::\d+)?: error: (?P<message>.*?)\s+\[(?P<code>[\w-]+)\]$")
_HEADER = "# mypy errors accepted for now; this file may only shrink (scripts/typecheck.py --shrink).\n"


def current_errors(mypy: list[str]) -> Counter[str]:
    done = subprocess.run(
        [*mypy, "--no-error-summary", "--show-error-codes", "--no-pretty", "--hide-error-context"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        sys.exit(f"typecheck: mypy failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    found: Counter[str] = Counter()
    for line in done.stdout.splitlines():
        match = _ERROR.match(line)
        if match:
            found[f"{match['path']}: [{match['code']}] {match['message']}"] += 1
    return found


def core_paths() -> list[str]:
    """Path prefixes of the modules under the strict override (`foundation.*` -> `foundation/`)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    strict = [o for o in config.get("overrides", []) if o.get("disallow_untyped_defs")]
    modules = [m for o in strict for m in o["module"]]
    return [m.removesuffix(".*").replace(".", "/") + ("/" if m.endswith(".*") else ".py") for m in modules]


def read_baseline() -> Counter[str]:
    if not BASELINE.is_file():
        return Counter()
    lines = BASELINE.read_text().splitlines()
    return Counter(line for line in lines if line.strip() and not line.startswith("#"))


def write_baseline(entries: Counter[str]) -> None:
    BASELINE.write_text(_HEADER + "".join(f"{e}\n" for e in sorted(entries.elements())))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shrink", action="store_true", help="drop baseline entries that no longer occur")
    parser.add_argument("--mypy", default=f"{sys.executable} -m mypy", help="the mypy command")
    args = parser.parse_args()
    baseline = read_baseline()
    core = sorted(e for e in baseline if any(e.startswith(p) for p in core_paths()))
    if core:
        print("\n".join(f"the core takes no baseline entries: {e}" for e in core))
        return 1
    found = current_errors(args.mypy.split())
    new = found - baseline
    gone = baseline - found
    if args.shrink:
        write_baseline(baseline - gone)
        print(f"typecheck: baseline {sum(baseline.values())} -> {sum((baseline - gone).values())} entries")
        gone = Counter()
    for entry in sorted(new.elements()):
        print(f"new type error: {entry}")
    for entry in sorted(gone.elements()):
        print(f"fixed, take it out of {BASELINE.name}: {entry}")
    if new or gone:
        hint = " (run scripts/typecheck.py --shrink)" if gone else ""
        print(
            f"typecheck: {sum(new.values())} new error(s), {sum(gone.values())} stale baseline entries{hint}"
        )
        return 1
    print(f"typecheck: no new errors ({sum(found.values())} in the baseline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
