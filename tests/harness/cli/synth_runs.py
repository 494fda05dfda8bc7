"""tests/harness/report/run_synth.py's synthetic run folder, for the CLI's tests (that folder is not a
package: loaded by path, once, under its own name, as tests/harness/experiment does)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if "run_synth" not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        "run_synth", Path(__file__).resolve().parents[1] / "report" / "run_synth.py"
    )
    assert _spec is not None and _spec.loader is not None
    sys.modules["run_synth"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["run_synth"])

build_run = sys.modules["run_synth"].build_run
