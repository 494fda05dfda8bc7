"""Calibration profiles: what the simulated server and GPU are made of, as a validated JSON document.

A profile is data, shipped in `harness/mock/profiles/<name>.json` or given as a file path. Fitted
profiles record where every number came from (`source`): the measurement file, its SHA-256, the
method, and which parameters were assumed rather than measured.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foundation.errors import InputError

PROFILE_SCHEMA_VERSION = 1
DEFAULT_PROFILE = "h100-vllm0.26-llama3.2-1b"


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite spike or step time would hang the simulator, never crash it
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StepTime(_Strict):
    """Duration of one engine step: base + per decode sequence + per prefill token (seconds).

    Host drift (off by default) multiplies every step's duration by a slowly varying factor with
    mean 1 and coefficient of variation `drift_cv`, correlated over `drift_time_s` simulated seconds
    (`host_drift.py`): what makes repeats of one arm on a real host differ from each other.
    """

    base_s: float = Field(gt=0)
    per_decode_seq_s: float = Field(ge=0)
    per_prefill_token_s: float = Field(ge=0)
    drift_cv: float = Field(default=0.0, ge=0)
    drift_time_s: float = Field(default=60.0, gt=0)


class Power(_Strict):
    """GPU power: `idle_w` between steps; during a step, energy = busy_w*d + per-token joules."""

    idle_w: float = Field(gt=0)
    busy_w: float = Field(gt=0)
    per_decode_token_j: float = Field(ge=0)
    per_prefill_token_j: float = Field(ge=0)

    @model_validator(mode="after")
    def _busy_above_idle(self) -> Power:
        if self.busy_w < self.idle_w:
            raise ValueError("busy_w must be >= idle_w")
        return self


class Frontend(_Strict):
    """The API server in front of the engine: one event loop that admits requests one at a time.

    A request waits `latency_s` (work that overlaps with others), then queues for admission; each
    admission takes `admit_cpu_s` plus `admit_cpu_s_per_request` for every request in flight.
    """

    latency_s: float = Field(default=0.0, ge=0)
    admit_cpu_s: float = Field(default=0.0, ge=0)
    admit_cpu_s_per_request: float = Field(default=0.0, ge=0)


class Scheduler(_Strict):
    """vLLM-style continuous batching limits."""

    max_num_seqs: int = Field(ge=1)
    max_num_batched_tokens: int = Field(ge=1)
    kv_cache_tokens: int = Field(ge=1)
    block_size: int = Field(default=16, ge=1)
    max_model_len: int = Field(ge=2)
    # TGI answers 429 above this many requests in flight (TGI's --max-concurrent-requests).
    max_concurrent_requests: int = Field(default=128, ge=1)

    @model_validator(mode="after")
    def _fits(self) -> Scheduler:
        if self.kv_cache_tokens < self.max_model_len:
            raise ValueError("kv_cache_tokens must hold at least one max_model_len sequence")
        return self


class OutputLength(_Strict):
    """Output length when a request may stop at EOS (not `ignore_eos`): `max_tokens` or a draw."""

    kind: Literal["lognormal", "max_tokens"] = "lognormal"
    mu: float = 5.0  # of log(tokens)
    sigma: float = Field(default=1.0, ge=0)
    min_tokens: int = Field(default=1, ge=1)


class Gpu(_Strict):
    """Identity and the parts of NVML's readings that are not calibrated (temperature, clocks)."""

    name: str = "Mock NVIDIA GPU"
    power_limit_w: float = Field(gt=0)
    sm_clock_hz: float = Field(default=1.98e9, gt=0)
    mem_clock_hz: float = Field(default=2.619e9, gt=0)
    ambient_c: float = 30.0
    thermal_resistance_c_per_w: float = Field(default=0.05, ge=0)
    thermal_time_constant_s: float = Field(default=30.0, gt=0)
    utilization_window_s: float = Field(default=1.0 / 6.0, gt=0)
    memory_utilization_when_busy: float = Field(default=0.5, ge=0, le=1)


class Faults(_Strict):
    """Fault injection, as per-request probabilities (0 = off) and their parameters."""

    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_statuses: tuple[int, ...] = (500, 503)
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: int = Field(default=1, ge=0)
    spike_rate: float = Field(default=0.0, ge=0, le=1)
    spike_s: float = Field(default=1.0, ge=0)
    stall_rate: float = Field(default=0.0, ge=0, le=1)
    stall_s: float = Field(default=2.0, ge=0)
    disconnect_rate: float = Field(default=0.0, ge=0, le=1)
    malformed_rate: float = Field(default=0.0, ge=0, le=1)
    no_usage_rate: float = Field(default=0.0, ge=0, le=1)
    # Per output token: its text holds a character str.splitlines() breaks on (U+2028, \x0b, ...).
    linebreak_rate: float = Field(default=0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _statuses(self) -> Faults:
        if not self.error_statuses or any(s not in (500, 502, 503, 504) for s in self.error_statuses):
            raise ValueError("error_statuses must be a non-empty list of 500, 502, 503, 504")
        return self


class Profile(_Strict):
    schema_version: int
    name: str
    description: str = ""
    flavour: Literal["vllm", "tgi"] = "vllm"
    engine_version: str = ""  # what /version (vLLM) or /info (TGI) reports
    gpu: Gpu
    scheduler: Scheduler
    step_time: StepTime
    power: Power
    frontend: Frontend = Frontend()
    output_length: OutputLength = OutputLength()
    faults: Faults = Faults()
    source: dict[str, Any] = Field(default_factory=dict)  # provenance; free-form, never read

    @model_validator(mode="after")
    def _version(self) -> Profile:
        if self.schema_version != PROFILE_SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not supported (expected 1)")
        return self

    def with_changes(self, **sections: dict[str, Any]) -> Profile:
        """A copy with some fields of some sections replaced, validated like a loaded profile."""
        data = self.model_dump()
        for section, changes in sections.items():
            if isinstance(data.get(section), dict):
                data[section] = {**data[section], **changes}
            else:
                data[section] = changes
        return _validate(data, origin=f"profile {self.name!r}")


def builtin_profiles() -> list[str]:
    folder = resources.files("harness.mock") / "profiles"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> Profile:
    """A built-in profile by name, or a profile file by path."""
    text_name = str(name_or_path)
    if text_name in builtin_profiles():
        resource = resources.files("harness.mock") / "profiles" / f"{text_name}.json"
        return parse_profile(resource.read_text(encoding="utf-8"), origin=f"profile {text_name!r}")
    path = Path(name_or_path)
    if not path.is_file():
        known = ", ".join(builtin_profiles())
        raise InputError(f"--profile: {text_name!r} is neither a built-in profile ({known}) nor a file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read profile ({exc})") from None
    return parse_profile(text, origin=str(path))


def parse_profile(text: str, origin: str) -> Profile:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{origin}: not valid JSON ({exc})") from None
    return _validate(data, origin)


def _validate(data: Any, origin: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "profile"
        raise InputError(f"{origin}: {where}: {first['msg']}") from None
