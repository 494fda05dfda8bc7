"""Energy join and attribution: energy per request that adds up to the measured total.

`analyze(requests, power, arms=..., idle=..., method=...)` is the entry point; `docs/energy.md`
describes the method and every figure it reports.
"""

from harness.energy.analysis_options import AnalysisOptions
from harness.energy.flags import Flag
from harness.energy.join import Analysis, analyze
from harness.energy.split import METHODS
from harness.energy.stats import BootstrapSpec
from harness.energy.summary_types import ArmPolicy
from harness.energy.windows import (
    ArmWindow,
    IdleWindows,
    Window,
    arm_windows_from_manifest,
    idle_windows_from_manifest,
)

__all__ = [
    "METHODS",
    "Analysis",
    "AnalysisOptions",
    "ArmPolicy",
    "ArmWindow",
    "BootstrapSpec",
    "Flag",
    "IdleWindows",
    "Window",
    "analyze",
    "arm_windows_from_manifest",
    "idle_windows_from_manifest",
]
