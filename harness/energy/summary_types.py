"""The shape of the summary `analyze` returns, which `summary.json` stores (docs/energy.md, "Figures").

TypedDicts rather than classes: the reports index the summary by key, and read it back from JSON as
plain dicts; these give those dicts a checked shape without changing them. A figure that cannot be
computed is None (null), never 0, and a flag says why. The leaf shapes live beside the code that makes
them: `Percentiles` and `Described` in `stats`, `Latency`, `Lateness` and `Rates` in `figures`,
`IdleAccount` in `idle_estimate`, `PowerLagRecord` in `power_lag`, `FlagRecord` in `flags`.
"""

from __future__ import annotations

from typing import Any, TypedDict

from harness.energy.figures import ClientLoad, Goodput, Hold, Latency, Lateness, Rates
from harness.energy.flags import FlagRecord
from harness.energy.idle_estimate import IdleAccount
from harness.energy.power_lag import PowerLagRecord
from harness.energy.stats import Described
from harness.energy.telemetry import TelemetrySummary


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


class AllInSplit(TypedDict):
    """The all-in figure = idle + above idle: the window's idle floor (idle power, or all of the power
    where it dipped below idle) per success, and the rest, which compares across GPUs with different
    idle floors. All None where `all_in` is; the block has none in summaries written before it."""

    idle_j_per_request: float | None
    above_idle_j_per_request: float | None
    idle_share: float | None  # idle / all-in


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
    all_in_split: AllInSplit
    j_per_output_token: float | None  # attributed J of successful requests / their tokens
    j_per_prompt_token: float | None
    tokens: TokenCounts
    mean_power_w: float | None  # window energy / time covered by samples, summed over GPUs
    throughput: Throughput
    rate: Rates
    latency_s: Latency
    lateness_ms: Lateness
    hold_ms: Hold
    client: ClientLoad  # in flight, held at --max-in-flight, the runner's loop lag and CPU share
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


class GpuEnergy(TypedDict):
    """One attributed GPU's part of the run's energy (gpu_breakdown.py); absent in older summaries."""

    energy_j: float
    attributed_j: float  # + unattributed_j = energy_j: conservation per GPU
    unattributed_j: float
    mean_power_w: float | None  # over the time its samples cover
    share: float | None  # of all attributed GPUs' energy


class _GpuPower(TypedDict):
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


class GpuPower(_GpuPower, GpuEnergy, total=False):
    """A summary written before per-GPU energy existed has only `_GpuPower`'s keys."""

    failed_reads: int  # reads that failed at the sidecar in the run window (report time; host_gpus)


class HostGpu(TypedDict):
    """A GPU of the power source's host that was not selected: reported, attributed to no request."""

    gpu: str
    uuid: str | None
    name: str | None
    energy_j: float | None  # over the run window; None where its samples do not cover it
    mean_power_w: float | None
    samples: int
    failed_reads: int
    issues: list[str]


class HostGpus(TypedDict):
    selected: list[str] | None  # the run's --gpus (None: every GPU the source had)
    known: bool  # the run's raw sidecar samples were there to read the host's GPUs from
    note: str | None  # why not, where not
    failed_reads: dict[str, int]  # per attributed GPU
    unattributed: list[HostGpu]


class _PowerSummary(TypedDict):
    source: str
    clock: dict[str, Any]  # how the power source's times were mapped, as the reader describes it
    issues: list[str]
    gpus: list[GpuPower]


class PowerSummary(_PowerSummary, total=False):
    host: HostGpus  # added by the report (harness/report/host_power.py); absent in older summaries
    telemetry: TelemetrySummary  # added by the report (harness/report/gpu_telemetry.py); absent in older


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


class TokenFitSummary(TypedDict):
    """The fit of dynamic energy on engine work (`token_fit.py`), and what the split weighed work with."""

    j_per_step: float | None
    j_per_decoded_token: float | None
    j_per_prompt_token: float | None
    r2: float | None
    n_intervals: int
    condition: float | None
    usable: bool
    reason: str | None  # why it is not usable
    weights: str  # what the split used: "fitted", "equal" (tokens) or "prior" (steps)


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
    power_lag: PowerLagRecord | None  # the power series' delay behind the requests, and the shift applied
    token_fit: TokenFitSummary | None  # the tokens and steps splits' work fit; None for `time`
    flags: list[FlagRecord]
