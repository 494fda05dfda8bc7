"""Time windows the join measures over: the arms of a run and the idle windows around it.

All times are harness monotonic nanoseconds. Arms run one after another, so each arm's energy is the
counter delta over its own window; the run window spans the first arm's start to the last arm's end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import pandas as pd

from foundation.errors import InputError
from foundation.flag_fields import check_choice

IdleMode = Literal["mean", "pre", "post", "linear"]
IDLE_MODES: tuple[IdleMode, ...] = get_args(IdleMode)


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int

    def __post_init__(self) -> None:
        if int(self.end_ns) < int(self.start_ns):
            raise ValueError(f"window ends ({self.end_ns}) before it starts ({self.start_ns})")

    @property
    def duration_s(self) -> float:
        return (int(self.end_ns) - int(self.start_ns)) / 1e9


@dataclass(frozen=True)
class ArmWindow:
    """One arm's measurement window; `derived` marks a window inferred from the request log."""

    name: str
    start_ns: int
    end_ns: int
    target_rate: float | None = None  # the plan's target mean rate (requests/s); None for closed loop
    derived: bool = False

    def __post_init__(self) -> None:
        if int(self.end_ns) < int(self.start_ns):
            raise ValueError(f"arm {self.name!r}: window ends before it starts")

    @property
    def window(self) -> Window:
        return Window(self.start_ns, self.end_ns)


@dataclass(frozen=True)
class IdleWindows:
    """Idle captures before and after the run, and which estimate the split uses.

    `mode`: `mean` of the available windows (default), `pre` or `post` only, or `linear`, which
    interpolates between the pre and post estimates over time (compensates a steady drift such as
    the GPU warming up).
    """

    pre: Window | None = None
    post: Window | None = None
    mode: str = "mean"

    def __post_init__(self) -> None:
        check_choice("idle mode", self.mode, IdleMode)


def arm_windows_from_manifest(manifest: Mapping[str, Any], origin: str = "manifest.json") -> list[ArmWindow]:
    """Arm windows from `manifest["arms"]`: a list of {name, start_ns, end_ns, target_rate?}.

    Returns [] when the manifest records none (the caller then derives them from the requests).
    """
    arms = manifest.get("arms")
    if arms is None:
        return []
    if not isinstance(arms, list):
        raise InputError(f"{origin}: arms: expected a list of {{name, start_ns, end_ns}}")
    out: list[ArmWindow] = []
    for i, arm in enumerate(arms):
        if not isinstance(arm, Mapping):
            raise InputError(f"{origin}: arms[{i}]: expected an object")
        if arm.get("start_ns") is None or arm.get("end_ns") is None:
            # An arm that never started (run interrupted) has no window; the requests tell the rest.
            continue
        try:
            rate = arm.get("target_rate", arm.get("mean_rate"))
            out.append(
                ArmWindow(
                    name=str(arm["name"]),
                    start_ns=int(arm["start_ns"]),
                    end_ns=int(arm["end_ns"]),
                    target_rate=None if rate is None else float(rate),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{origin}: arms[{i}]: {exc}") from None
    return out


def idle_windows_from_manifest(
    manifest: Mapping[str, Any], mode: str = "mean", origin: str = "manifest.json"
) -> IdleWindows:
    """Idle windows from `manifest["idle"]` = {"pre": {start_ns, end_ns} | null, "post": ...}."""
    idle = manifest.get("idle") or {}
    if not isinstance(idle, Mapping):
        raise InputError(f"{origin}: idle: expected an object with pre/post windows")

    def window(key: str) -> Window | None:
        raw = idle.get(key)
        if raw is None:
            return None
        try:
            return Window(int(raw["start_ns"]), int(raw["end_ns"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{origin}: idle.{key}: {exc}") from None

    return IdleWindows(pre=window("pre"), post=window("post"), mode=mode)


def derive_arm_windows(requests: pd.DataFrame, known: Sequence[ArmWindow] = ()) -> list[ArmWindow]:
    """Windows for arms the manifest does not describe: first planned/sent time to last done time.

    Arms keep the order in which they first appear in the log (the plan runs them in that order).
    """
    have = {arm.name for arm in known}
    out = list(known)
    measured = requests[~requests["warmup"].fillna(False).astype(bool)]
    for name in pd.unique(measured["arm"].astype(str)):
        if name in have:
            continue
        rows = measured[measured["arm"].astype(str) == name]
        starts = pd.concat([rows["planned_ns"], rows["sent_ns"]]).dropna()
        ends = pd.concat([rows["done_ns"], rows["sent_ns"]]).dropna()
        if starts.empty or ends.empty:
            continue
        out.append(ArmWindow(name=name, start_ns=int(starts.min()), end_ns=int(ends.max()), derived=True))
    out.sort(key=lambda arm: arm.start_ns)
    return out


def run_window(arms: Sequence[ArmWindow]) -> Window | None:
    if not arms:
        return None
    return Window(min(a.start_ns for a in arms), max(a.end_ns for a in arms))
