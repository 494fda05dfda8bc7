"""Energy join and attribution: energy per request that adds up to the measured total.

`analyze(requests, power, arms=..., idle=..., method=...)` is the entry point; `docs/energy.md`
describes the method and every figure it reports.
"""

from .analysis import Analysis, AnalysisOptions, analyze
from .flags import Flag
from .power_file import load_power, save_power
from .split import METHODS
from .stats import BootstrapSpec
from .windows import (
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
    "ArmWindow",
    "BootstrapSpec",
    "Flag",
    "IdleWindows",
    "Window",
    "analyze",
    "arm_windows_from_manifest",
    "idle_windows_from_manifest",
    "load_power",
    "save_power",
]
