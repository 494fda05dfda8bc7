"""The shape of the summary `analyze` returns, which `summary.json` stores (docs/energy.md, "Figures").

TypedDicts rather than classes: the reports index the summary by key, and read it back from JSON as
plain dicts; these give those dicts a checked shape without changing them. A figure that cannot be
computed is None (null), never 0, and a flag says why. The leaf shapes live beside the code that makes
them: `Percentiles` and `Described` in `stats`, `Latency`, `Lateness` and `Rates` in `figures`,
`IdleAccount` in `idle_estimate`, `FlagRecord` in `flags`.
"""

from __future__ import annotations

from typing import Any, TypedDict

from harness.energy.figures import Goodput, Hold, Latency, Lateness, Rates
from harness.energy.flags import FlagRecord
from harness.energy.idle_estimate import IdleAccount
from harness.energy.stats import Described


class WindowSpan(TypedDict):
    start_ns: int
    end_ns: int
    duration_s: float
    derived: bool  # taken from the request log, not the manifest


class _RequestCounts(TypedDict):
    total: int  # planned, warm-up excluded
    ok: int
    by_status: dict[str, int]  # every status that occurred, "ok" included


class RequestCounts(_RequestCounts, total=False):
    warmup: int  # the run block only


class EnergyAccount(TypedDict):
    """A window's account (J): total = attributed + unattributed; the rest says where energy spilled."""

    energy_j_total: float | None
    energy_j_attributed: float | None
    energy_j_unattributed: float | None
    energy_j_other_arms: float | None  # inside this window, to other arms' requests
    energy_j_outside_window: float | None  # this arm's requests' energy outside its window
    energy_j_failed: float | None  # energy of the requests that did not succeed


class Parts(TypedDict):
    """Mean J per successful request of each part of its energy."""

    prefill: float | None
    decode: float | None
    idle: float | None
    dynamic: float | None


class AllIn(TypedDict):
    """The window's total per successful request: idle stretches and failed requests included. All None
    when the window's power is incomplete (`power_coverage.complete` false): a part is not the whole."""

    j_per_request: float | None
    ci95: list[float] | None
    wh_per_request: float | None
    j_per_output_token: float | None


class TokenCounts(TypedDict):
    output: float  # of successful requests
    prompt: float


class Throughput(TypedDict):
    requests_per_s: float | None  # successful ones, over the window
    output_tokens_per_s: float | None
    prompt_tokens_per_s: float | None


class Coverage(TypedDict):
    mean: float | None  # of successful requests
    min: float | None
    below_min: int


class PowerCoverage(TypedDict):
    """The share of the window that power samples span; all None without power data."""

    min: float | None  # over the GPUs: below `options.min_power_coverage` the window's energy is incomplete
    by_gpu: dict[str, float]
    complete: bool | None  # min >= the bound: the energy total and the all-in figures are whole


class ArmPolicy(TypedDict):
    """A shaped arm's policy, as its plan gives it."""

    spec: str  # canonical: KIND:key=value,... with every parameter
    name: str  # the part of the arm's name after '+'


class Block(EnergyAccount):
    """The figures of one arm, or of the run."""

    name: str
    policy: ArmPolicy | None  # a shaped arm's; None: unshaped (and the run block)
    window: WindowSpan | None
    requests: RequestCounts
    j_per_request: Described  # attributed J per successful request
    wh_per_request: Described
    j_per_request_parts: Parts
    all_in: AllIn
    j_per_output_token: float | None  # attributed J of successful requests / their tokens
    j_per_prompt_token: float | None
    tokens: TokenCounts
    mean_power_w: float | None  # window energy / time covered by samples, summed over GPUs
    throughput: Throughput
    rate: Rates
    latency_s: Latency
    lateness_ms: Lateness
    hold_ms: Hold
    goodput: Goodput | None  # None: no SLO was given (options.slo_ttft_s, slo_e2e_s)
    coverage: Coverage
    power_coverage: PowerCoverage
    flags: list[str]  # codes of the flags that concern this block


class Conservation(TypedDict):
    """attributed + unattributed = total, up to `residual_j`; all None without power data."""

    total_j: float | None
    attributed_j: float | None
    unattributed_j: float | None
    residual_j: float | None


class IdleSummary(IdleAccount):
    clamped_j: float  # idle energy lost where power fell below the estimate


class GpuPower(TypedDict):
    gpu: str
    uuid: str | None
    name: str | None
    samples: int
    integrated: bool  # energy integrated from power readings (no hardware counter)
    source: str
    median_interval_s: float | None  # None under 2 samples; this and the next three None without a run
    gaps: int | None
    gap_s: float | None
    repeated_readings: int | None
    issues: list[str]


class PowerSummary(TypedDict):
    source: str
    clock: dict[str, Any]  # how the power source's times were mapped, as the reader describes it
    issues: list[str]
    gpus: list[GpuPower]


class BootstrapSummary(TypedDict):
    resamples: int
    seed: int


class OptionsSummary(TypedDict):
    counter_period_s: float
    window_error_limit: float
    min_coverage: float
    min_power_coverage: float
    max_lateness_ms: float | None  # None: each arm's bound from its planned gaps (lateness_ms.bound)
    slo_ttft_s: float | None  # the SLO goodput is measured against (None with slo_e2e_s: no goodput)
    slo_e2e_s: float | None


class Summary(TypedDict):
    """`summary.json` less what the report adds (`run_id`, `generated_utc`, `joulebench`)."""

    schema_version: int
    method: str
    run: Block
    arms: list[Block]
    conservation: Conservation
    idle: IdleSummary
    power: PowerSummary
    bootstrap: BootstrapSummary
    options: OptionsSummary
    flags: list[FlagRecord]
