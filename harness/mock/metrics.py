"""`GET /metrics`: Prometheus text exposition with vLLM's (`vllm:*`) or TGI's (`tgi_*`) metric families.

Names, types, labels and buckets follow the real servers (vLLM v1's PrometheusStatLogger, TGI's router
with metrics-exporter-prometheus), so dashboards and the harness's server-metrics reader work
unchanged. Durations are in wall-clock seconds, as a client observes them (simulated seconds divided
by the server's speed). Only families the simulation can fill honestly are exported; prefix caching
is not simulated, so its counters stay 0.

TGI's counters have no `_total` suffix and vLLM's names hold colons: `promtool check metrics` reports
both as lint findings on the real servers too.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

from harness.mock.engine import SimRequest, Simulator, Step

# Bucket bounds as vLLM v1's PrometheusStatLogger sets them.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)  # fmt: skip
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                           120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


# Histogram families: name -> (HELP text, which bucket bounds). One table per flavour, so that what is
# collected and what is exported cannot drift apart.
VLLM_HISTOGRAMS = {
    "request_prompt_tokens": ("Number of prefill tokens processed.", "tokens"),
    "request_generation_tokens": ("Number of generation tokens processed.", "tokens"),
    "request_params_max_tokens": ("Histogram of the max_tokens request parameter.", "tokens"),
    "iteration_tokens_total": ("Histogram of number of tokens per engine_step.", "iteration"),
    "time_to_first_token_seconds": ("Histogram of time to first token in seconds.", "ttft"),
    "inter_token_latency_seconds": ("Histogram of inter-token latency in seconds.", "itl"),
    "request_time_per_output_token_seconds": ("Histogram of time per output token per request.", "itl"),
    "e2e_request_latency_seconds": ("Histogram of e2e request latency in seconds.", "latency"),
    "request_queue_time_seconds": ("Histogram of time spent in WAITING phase for request.", "latency"),
    "request_inference_time_seconds": ("Histogram of time spent in RUNNING phase for request.", "latency"),
    "request_prefill_time_seconds": ("Histogram of time spent in PREFILL phase for request.", "latency"),
    "request_decode_time_seconds": ("Histogram of time spent in DECODE phase for request.", "latency"),
}
TGI_HISTOGRAMS = {
    "tgi_request_duration": ("Total time spent processing the request (e2e latency)", "duration"),
    "tgi_request_validation_duration": ("Time spent validating the request", "duration"),
    "tgi_request_queue_duration": ("Time spent in the queue per request", "duration"),
    "tgi_request_inference_duration": ("Request inference duration", "duration"),
    "tgi_request_mean_time_per_token_duration": ("Mean time per token per request", "duration"),
    "tgi_request_generated_tokens": ("Generated tokens per request", "length"),
    "tgi_request_input_length": ("Input token length per request", "length"),
    "tgi_request_max_new_tokens": ("Maximum new tokens per request", "length"),
    "tgi_batch_next_size": ("Batch size of the next batch", "batch"),
}


def one_two_five(limit: int) -> tuple[int, ...]:
    """vLLM's 1-2-5 buckets up to `limit`: 1, 2, 5, 10, 20, 50, ..."""
    out, base = [], 1
    while True:
        for m in (1, 2, 5):
            if base * m > limit:
                return tuple(out)
            out.append(base * m)
        base *= 10


def tgi_duration_buckets() -> tuple[float, ...]:
    """TGI's buckets for every `*_duration` histogram: 0.0001 * 1.5^k, k = 1..35."""
    return tuple(0.0001 * 1.5**k for k in range(1, 36))


class Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, total = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            total += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{_num(float(bound))}"}} {total}')
        total += self.counts[-1]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {total}')
        suffix = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_count{suffix} {total}")
        out.append(f"{name}_sum{suffix} {_num(self.sum)}")
        return out


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value)}.0"
    return repr(value)


def _family(name: str, kind: str, help_text: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


class ServerMetrics:
    """Collects what happens (the simulator's steps, finished and failed requests) and renders it."""

    def __init__(self, sim: Simulator, flavour: str, model_name: str, speed: float) -> None:
        self.sim = sim
        self.flavour = flavour
        self.model_name = model_name
        self.to_wall = 1.0 / speed
        max_len = sim.profile.scheduler.max_model_len
        self.success: dict[str, int] = {"stop": 0, "length": 0, "abort": 0}
        self.received = 0
        self.failures: dict[str, int] = {}
        if flavour == "vllm":
            bounds: dict[str, Iterable[float]] = {
                "tokens": one_two_five(max_len),
                "iteration": ITERATION_TOKEN_BUCKETS,
                "ttft": TTFT_BUCKETS,
                "itl": ITL_BUCKETS,
                "latency": REQUEST_LATENCY_BUCKETS,
            }
            self.hist = {name: Histogram(bounds[kind]) for name, (_, kind) in VLLM_HISTOGRAMS.items()}
        else:
            durations = tgi_duration_buckets()
            bounds = {
                "duration": durations,
                "length": tuple(max_len / 100 * (k + 1) for k in range(100)),
                "batch": range(1, sim.profile.scheduler.max_num_seqs + 1),
            }
            self.hist = {name: Histogram(bounds[kind]) for name, (_, kind) in TGI_HISTOGRAMS.items()}
            self.forward = {"prefill": Histogram(durations), "decode": Histogram(durations)}
            self.inference_count = {"prefill": 0, "decode": 0}

    # ---------------------------------------------------------------- events
    def step_done(self, step: Step) -> None:
        wall = self.to_wall
        if self.flavour == "vllm":
            hist = self.hist
            hist["iteration_tokens_total"].observe(step.n_decode + step.n_prefill_tokens)
            itl, ttft = hist["inter_token_latency_seconds"], hist["time_to_first_token_seconds"]
            for req in step.emitted:
                if req.generated == 1:
                    ttft.observe((req.first_token - req.arrival) * wall)
                else:
                    itl.observe((req.last_token - req.prev_token) * wall)
        else:
            method = "prefill" if step.n_prefill_tokens else "decode"
            self.forward[method].observe((step.end - step.start) * wall)
            self.inference_count[method] += 1
            self.hist["tgi_batch_next_size"].observe(len(step.batch))
        for req in step.finished:
            self.request_done(req)

    def request_received(self) -> None:
        self.received += 1

    def request_failed(self, kind: str) -> None:
        """TGI's `tgi_request_failure{err=...}`: validation, overloaded, generation, incomplete."""
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def request_done(self, req: SimRequest) -> None:
        """A request finished or was aborted (the simulator's times are in simulated seconds)."""
        self.success[req.finish_reason or "abort"] += 1
        if req.finish_reason == "abort" or math.isnan(req.first_token):
            return
        wall, h = self.to_wall, self.hist
        if self.flavour == "vllm":
            h["request_prompt_tokens"].observe(req.prompt_tokens)
            h["request_generation_tokens"].observe(req.generated)
            h["request_params_max_tokens"].observe(req.max_tokens)
            h["e2e_request_latency_seconds"].observe((req.finished - req.arrival) * wall)
            h["request_queue_time_seconds"].observe((req.scheduled - req.admitted) * wall)
            h["request_inference_time_seconds"].observe((req.finished - req.scheduled) * wall)
            h["request_prefill_time_seconds"].observe((req.first_token - req.scheduled) * wall)
            h["request_decode_time_seconds"].observe((req.finished - req.first_token) * wall)
            if req.generated > 1:
                tpot = (req.finished - req.first_token) / (req.generated - 1) * wall
                h["request_time_per_output_token_seconds"].observe(tpot)
        else:
            inference = (req.finished - req.scheduled) * wall
            h["tgi_request_duration"].observe((req.finished - req.arrival) * wall)
            h["tgi_request_validation_duration"].observe((req.admitted - req.arrival) * wall)
            h["tgi_request_queue_duration"].observe((req.scheduled - req.admitted) * wall)
            h["tgi_request_inference_duration"].observe(inference)
            h["tgi_request_mean_time_per_token_duration"].observe(inference / req.generated)
            h["tgi_request_generated_tokens"].observe(req.generated)
            h["tgi_request_input_length"].observe(req.prompt_tokens)
            h["tgi_request_max_new_tokens"].observe(req.max_tokens)

    # ---------------------------------------------------------------- exposition
    def render(self) -> str:
        lines = self._vllm() if self.flavour == "vllm" else self._tgi()
        return "\n".join(lines) + "\n"

    def _vllm(self) -> list[str]:
        sim, labels = self.sim, f'engine="0",model_name="{_escape(self.model_name)}"'
        sched = sim.profile.scheduler
        out: list[str] = []

        def gauge(name: str, help_text: str, value: float) -> None:
            out.extend(
                _family(f"vllm:{name}", "gauge", help_text, [f"vllm:{name}{{{labels}}} {_num(value)}"])
            )

        def counter(name: str, help_text: str, value: float) -> None:
            sample = f"vllm:{name}_total{{{labels}}} {_num(value)}"
            out.extend(_family(f"vllm:{name}_total", "counter", help_text, [sample]))

        gauge("num_requests_running", "Number of requests in model execution batches.", len(sim.running))
        gauge("num_requests_waiting", "Number of requests waiting to be processed.", sim.num_waiting)
        gauge("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", sim.kv_usage)
        info = (
            f'block_size="{sched.block_size}",engine="0",num_gpu_blocks="{sim.total_blocks}",'
            f'max_num_batched_tokens="{sched.max_num_batched_tokens}",max_num_seqs="{sched.max_num_seqs}"'
        )
        out.extend(
            _family(
                "vllm:cache_config_info",
                "gauge",
                "Information of the LLMEngine CacheConfig",
                [f"vllm:cache_config_info{{{info}}} 1.0"],
            )
        )
        counter("num_preemptions", "Cumulative number of preemption from the engine.", sim.preemptions)
        counter("prompt_tokens", "Number of prefill tokens processed.", sim.prompt_tokens_total)
        counter("generation_tokens", "Number of generation tokens processed.", sim.generation_tokens_total)
        counter("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", 0)
        counter("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", 0)
        out.extend(
            _family(
                "vllm:request_success_total",
                "counter",
                "Count of successfully processed requests.",
                [
                    f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {_num(n)}'
                    for reason, n in self.success.items()
                ],
            )
        )
        for key, hist in self.hist.items():
            help_text = VLLM_HISTOGRAMS[key][0]
            out.extend(_family(f"vllm:{key}", "histogram", help_text, hist.lines(f"vllm:{key}", labels)))
        return out

    def _tgi(self) -> list[str]:
        sim, out = self.sim, []

        def plain(name: str, kind: str, help_text: str, value: float) -> None:
            out.extend(_family(name, kind, help_text, [f"{name} {_num(value)}"]))

        running = sim.running
        plain("tgi_request_count", "counter", "Total number of requests", self.received)
        succeeded = self.success["stop"] + self.success["length"]
        plain("tgi_request_success", "counter", "Number of successful requests", succeeded)
        if self.failures:
            failures = sorted(self.failures.items())
            samples = [f'tgi_request_failure{{err="{err}"}} {_num(n)}' for err, n in failures]
            out.extend(_family("tgi_request_failure", "counter", "Number of failed requests", samples))
        plain("tgi_queue_size", "gauge", "Current queue size", sim.num_waiting + sim.frontend_queue)
        plain("tgi_batch_current_size", "gauge", "Current batch size", len(running))
        plain(
            "tgi_batch_current_max_tokens",
            "gauge",
            "Maximum tokens for the current batch",
            sum(r.prompt_tokens + r.max_tokens for r in running),
        )
        for name, help_text in (
            ("tgi_batch_inference_count", "Inference calls per method (prefill or decode)"),
            (
                "tgi_batch_inference_success",
                "Number of successful inference calls per method (prefill or decode)",
            ),
        ):
            out.extend(
                _family(
                    name,
                    "counter",
                    help_text,
                    [f'{name}{{method="{m}"}} {_num(n)}' for m, n in self.inference_count.items()],
                )
            )
        forward = []
        for method, hist in self.forward.items():
            forward.extend(hist.lines("tgi_batch_forward_duration", f'method="{method}"'))
        out.extend(
            _family("tgi_batch_forward_duration", "histogram", "Batch forward duration per method", forward)
        )
        for key, hist in self.hist.items():
            out.extend(_family(key, "histogram", TGI_HISTOGRAMS[key][0], hist.lines(key, "")))
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
