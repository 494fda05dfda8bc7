"""joulebench from Python: measure a run, open a run folder, get its tables as pandas (docs/python-api.md).

    import joulebench
    result = joulebench.run(schedules=["fixed:interval=0.25", "bursty:size=8,intra=0.01,gap=2"], n=40)
    result.arms        # one row per arm: J/request with its CI, latency, flags
    result.requests    # one row per request, its energy joined
    joulebench.open_run("runs/latest").summary

This is the import path to use: `harness`, `traffic` and `foundation` are joulebench's implementation
(and names other distributions install too). Names load when first used, so the pytest plugin
(`joulebench.pytest_plugin`, loaded in every test session) imports nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foundation.errors import InputError
    from joulebench.api_run import StrictFailure, run, run_async
    from joulebench.run_result import ExperimentResult, RunResult, open_experiment, open_run

_EXPORTS = {
    "run": "joulebench.api_run",
    "run_async": "joulebench.api_run",
    "StrictFailure": "joulebench.api_run",
    "open_run": "joulebench.run_result",
    "open_experiment": "joulebench.run_result",
    "RunResult": "joulebench.run_result",
    "ExperimentResult": "joulebench.run_result",
    "InputError": "foundation.errors",
}
__all__ = [  # noqa: RUF022 (in the order a reader needs them)
    "run", "run_async", "open_run", "open_experiment", "RunResult", "ExperimentResult", "StrictFailure",
    "InputError",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'joulebench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
