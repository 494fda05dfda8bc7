"""Run as a script: execute a plan from a process whose descriptors run out mid-run, and print the
run folder's path. The open-files limit is exactly what the start check asks for (the pool plus
FD_MARGIN), but the process already holds all but SPARE of them (as a host program embedding the
runner might), so the run starts and every socket() beyond what is left fails with EMFILE.

    python starved_runner.py URL OUT N SPARE TRANSPORT
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from runner_helpers import plan_of, run_plan

from harness.runner import RunOptions
from harness.runner.dispatcher import pool_size, staged_at_once
from harness.runner.fd_limit import FD_MARGIN


def main(url: str, out: Path, n: int, spare: int, transport: str) -> None:
    plan = plan_of("fixed:interval=0.001", n=n, max_tokens=64)  # one open-loop arm: a pool of n
    options = RunOptions(transport=transport)
    limit = pool_size(plan, options) + staged_at_once(plan, options) + FD_MARGIN
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    held = []
    while len(os.listdir("/proc/self/fd")) - 1 < limit - spare:  # less the one listdir holds
        held.append(os.open(os.devnull, os.O_RDONLY))
    result = run_plan(url, plan, out, timeout_s=10, transport=transport)
    print(result.folder.path)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
