"""Fit a mock-server profile to serving measurements.

    python -m harness.mock.calibrate CALIBRATION.json -o harness/mock/profiles/NAME.json \\
        [--model-config config.json] [--output-lengths trace.csv|trace.jsonl] [--name NAME]

The input is the JSON that `shared/device/calibrate.py` writes on the GPU machine: decode rows (waves of
B simultaneous requests), prefill rows (single requests with max_tokens=1), idle power. The method:

1. Prefill time per token: the slope of prefill latency against prompt length (least squares).
2. Step time and frontend (step base, per decode sequence; frontend latency, admission CPU, admission
   CPU per request in flight): least squares on log ratios between measured and simulated rows, each
   evaluation a replay of the decode waves on the simulator's virtual clock. Rows with B <=
   --fit-max-batch weigh in with decode step, energy per request and wave duration; all rows with
   median TTFT, and larger B with wave duration, at lower weight (the shape beyond the fitted range).
3. Power (busy power, joules per decode and per prefill token), solved inside every evaluation of 2:
   non-negative least squares on relative energy errors, with the simulator's busy time and token
   counts of each decode wave (B <= --fit-max-batch) and of each prefill row as regressors; idle
   power is measured directly. Steps above the power limit are stretched, so 2-3 run twice.
4. Scheduler limits are not measured: vLLM's defaults for its OpenAI server on a GPU with >= 70 GiB
   (max_num_seqs 1024, max_num_batched_tokens 8192), max_model_len from the server flags, and the
   KV-cache size derived from the model config and GPU memory. Temperature and clocks are assumed.
5. Output lengths for requests that stop at EOS: a lognormal fitted (by moments of log length) to a
   trace's output lengths, when one is given.

The profile records the fitted numbers, the source file and its SHA-256, the method, the assumptions
and a table of measured vs simulated figures per row.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from scipy.optimize import least_squares, nnls

from foundation.errors import InputError
from harness.mock.profile import PROFILE_SCHEMA_VERSION, Profile
from harness.mock.replay import WaveResult, replay_prefill, replay_wave

# vLLM's defaults for the OpenAI server on GPUs with >= 70 GiB (vllm/engine/arg_utils.py).
DEFAULT_MAX_NUM_SEQS = 1024
DEFAULT_MAX_NUM_BATCHED_TOKENS = 8192
DEFAULT_MAX_MODEL_LEN = 4096


class _Row(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DecodeRow(_Row):
    batch: int
    waves: int
    requests: int
    errors: int = 0
    window_s: float
    energy_j: float
    ttft_s_median: float
    e2e_s_median: float
    decode_step_s: float

    @property
    def wave_s(self) -> float:
        return self.window_s / self.waves

    @property
    def j_per_request(self) -> float:
        return self.energy_j / self.requests


class PrefillRow(_Row):
    prompt_tokens: int
    requests: int
    window_s: float
    energy_j: float
    latency_s_median: float


class Calibration(_Row):
    gpu: str
    driver: str = ""
    power_limit_w: float
    prompt_tokens: int
    output_tokens: int
    idle_w: float
    decode: list[DecodeRow]
    prefill: list[PrefillRow]
    server: dict = {}
    method: str = ""


def load_calibration(path: Path) -> tuple[Calibration, str, list[str]]:
    """The measurements, their SHA-256, and notes on rows left out."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    notes = []
    # Rows of failed batch sizes carry only counts and an error sample: leave them out, say so.
    kept = []
    for i, row in enumerate(data.get("decode") or []):
        if isinstance(row, dict) and "e2e_s_median" not in row:
            notes.append(f"decode[{i}] (batch {row.get('batch')}) has no timings: left out")
        else:
            kept.append(row)
    data["decode"] = kept
    try:
        cal = Calibration.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: {where}: {first['msg']}") from None
    if len(cal.decode) < 2:
        raise InputError(f"{path}: decode: at least two batch sizes with timings are needed")
    if len(cal.prefill) < 2:
        raise InputError(f"{path}: prefill: at least two prompt lengths are needed")
    return cal, hashlib.sha256(raw).hexdigest(), notes


def kv_cache_tokens(config: dict, gpu_memory_gib: float, utilization: float, reserve_gib: float) -> int:
    """KV-cache capacity the way vLLM sizes it: memory left after weights and activations."""
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim", hidden // heads)
    inter = config["intermediate_size"]
    vocab = config["vocab_size"]
    per_layer = (
        hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2 + 3 * hidden * inter + 2 * hidden
    )
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings") else 2)
    weights_bytes = 2 * (layers * per_layer + embeddings + hidden)  # bf16
    per_token_bytes = 2 * layers * kv_heads * head_dim * 2  # K and V, bf16
    free = gpu_memory_gib * 2**30 * utilization - weights_bytes - reserve_gib * 2**30
    if free < per_token_bytes:
        raise InputError("--model-config: the model leaves no memory for the KV cache on this GPU")
    return int(free // per_token_bytes)


def fit_lognormal(lengths: np.ndarray) -> tuple[float, float]:
    logs = np.log(lengths[lengths >= 1])
    return float(logs.mean()), float(logs.std())


def read_output_lengths(path: Path) -> np.ndarray:
    """Output lengths from an Azure-style CSV (`GeneratedTokens`) or JSONL (`output_length`)."""
    try:
        if path.suffix == ".jsonl":
            values = [
                json.loads(line)["output_length"] for line in path.read_text().splitlines() if line.strip()
            ]
        else:
            import pandas as pd

            values = pd.read_csv(path)["GeneratedTokens"].tolist()
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: cannot read output lengths ({type(exc).__name__}: {exc})") from None
    lengths = np.asarray(values, dtype=float)
    if len(lengths) < 10:
        raise InputError(f"{path}: too few output lengths ({len(lengths)}) to fit a distribution")
    return lengths


# ---------------------------------------------------------------------------------------------- fit
def _with_timing(profile: Profile, x: np.ndarray) -> Profile:
    base, per_seq, latency, admit, per_request = np.exp(x)
    return profile.with_changes(
        step_time={"base_s": base, "per_decode_seq_s": per_seq},
        frontend={"latency_s": latency, "admit_cpu_s": admit, "admit_cpu_s_per_request": per_request},
    )


def _replay_all(profile: Profile, cal: Calibration) -> list[WaveResult]:
    return [replay_wave(profile, row.batch, cal.prompt_tokens, cal.output_tokens) for row in cal.decode]


def power_coefficients(
    profile: Profile, cal: Calibration, waves: list[WaveResult], fit_max_batch: int
) -> np.ndarray:
    """(busy - idle watts, J per decode token, J per prefill token) by relative non-negative least squares.

    Energy of a decode wave = idle*duration + (busy-idle)*busy_time + per-token joules; of a prefill
    row's request = idle*(its measured window) + (busy-idle)*busy_time + joules per prompt token.
    """
    rows, targets = [], []
    for row, sim in zip(cal.decode, waves, strict=True):
        if row.batch <= fit_max_batch:
            rows.append([sim.busy_s, sim.decode_tokens, sim.prefill_tokens])
            targets.append(row.energy_j / row.waves - cal.idle_w * sim.duration_s)
    for row in cal.prefill:
        sim = replay_prefill(profile, row.prompt_tokens)
        rows.append([sim.busy_s, 0.0, row.prompt_tokens])
        targets.append(row.energy_j / row.requests - cal.idle_w * row.window_s / row.requests)
    a, b = np.asarray(rows), np.asarray(targets)
    if np.any(b <= 0):
        raise InputError("calibration: a row used less energy than idle power over its window")
    weights = 1.0 / b  # relative errors: every row counts alike
    coef, _ = nnls(a * weights[:, None], b * weights)
    return coef


def _with_power(profile: Profile, idle_w: float, coef: np.ndarray) -> Profile:
    extra_w, per_decode, per_prefill = (float(c) for c in coef)
    return profile.with_changes(
        power={
            "idle_w": idle_w,
            "busy_w": idle_w + extra_w,
            "per_decode_token_j": per_decode,
            "per_prefill_token_j": per_prefill,
        }
    )


def fit_timing_and_power(start: Profile, cal: Calibration, fit_max_batch: int) -> Profile:
    """Least squares over the timing parameters; the power fit (linear) is solved inside each step."""

    def evaluate(x: np.ndarray) -> tuple[Profile, list[WaveResult], np.ndarray]:
        profile = _with_timing(start, x)
        waves = _replay_all(profile, cal)
        return profile, waves, power_coefficients(profile, cal, waves, fit_max_batch)

    def residuals(x: np.ndarray) -> np.ndarray:
        _, waves, (extra_w, per_decode, per_prefill) = evaluate(x)
        out = []
        for row, sim in zip(cal.decode, waves, strict=True):
            energy = (
                cal.idle_w * sim.duration_s
                + extra_w * sim.busy_s
                + per_decode * sim.decode_tokens
                + per_prefill * sim.prefill_tokens
            )
            if row.batch <= fit_max_batch:  # the curve the profile must follow closely
                out.append(3.0 * math.log(sim.decode_step_s / row.decode_step_s))
                out.append(3.0 * math.log(energy / row.batch / row.j_per_request))
                out.append(math.log(sim.duration_s / row.wave_s))
            else:  # the shape beyond it
                out.append(0.5 * math.log(sim.duration_s / row.wave_s))
            out.append(0.5 * math.log(sim.ttft_s_median / row.ttft_s_median))
        return np.asarray(out)

    st, fe = start.step_time, start.frontend
    x0 = np.log([st.base_s, st.per_decode_seq_s, fe.latency_s, fe.admit_cpu_s, fe.admit_cpu_s_per_request])
    # Relative steps of ~2%: the simulator is piecewise constant at the scale of one step.
    result = least_squares(residuals, x0, diff_step=0.02, max_nfev=400)
    profile, _, coef = evaluate(result.x)
    return _with_power(profile, cal.idle_w, coef)


def prefill_slope(cal: Calibration) -> float:
    x = np.array([r.prompt_tokens for r in cal.prefill], dtype=float)
    y = np.array([r.latency_s_median for r in cal.prefill])
    slope = float(np.polyfit(x, y, 1)[0])
    return max(slope, 0.0)


def fit_report(profile: Profile, cal: Calibration) -> dict:
    waves = _replay_all(profile, cal)
    decode = [
        {
            "batch": row.batch,
            "measured": {
                "j_per_request": round(row.j_per_request, 4),
                "decode_step_s": row.decode_step_s,
                "ttft_s_median": row.ttft_s_median,
                "wave_s": round(row.wave_s, 4),
            },
            "simulated": {
                "j_per_request": round(sim.j_per_request, 4),
                "decode_step_s": round(sim.decode_step_s, 6),
                "ttft_s_median": round(sim.ttft_s_median, 4),
                "wave_s": round(sim.duration_s, 4),
            },
        }
        for row, sim in zip(cal.decode, waves, strict=True)
    ]
    prefill = []
    for row in cal.prefill:
        sim = replay_prefill(profile, row.prompt_tokens)
        window = row.window_s / row.requests
        prefill.append(
            {
                "prompt_tokens": row.prompt_tokens,
                "measured": {"j_per_request": round(row.energy_j / row.requests, 4)},
                # the measured window per request holds client gaps: pad the simulated one with idle
                "simulated": {
                    "j_per_request": round(sim.energy_j + cal.idle_w * (window - sim.latency_s), 4)
                },
            }
        )
    return {"decode": decode, "prefill": prefill}


def fit_profile(
    cal: Calibration,
    *,
    name: str,
    source: dict,
    kv_tokens: int,
    max_model_len: int,
    output_lengths: tuple[float, float] | None,
    fit_max_batch: int,
) -> Profile:
    step0 = 0.8 * min(r.decode_step_s for r in cal.decode)
    start = Profile.model_validate(
        {
            "schema_version": PROFILE_SCHEMA_VERSION,
            "name": name,
            "flavour": "vllm",
            "gpu": {"name": f"Mock {cal.gpu}", "power_limit_w": cal.power_limit_w},
            "scheduler": {
                "max_num_seqs": DEFAULT_MAX_NUM_SEQS,
                "max_num_batched_tokens": DEFAULT_MAX_NUM_BATCHED_TOKENS,
                "kv_cache_tokens": kv_tokens,
                "max_model_len": max_model_len,
            },
            "step_time": {
                "base_s": step0,
                "per_decode_seq_s": step0 / 100,
                "per_prefill_token_s": prefill_slope(cal),
            },
            # Starting power matters only where steps hit the power limit; it is fitted below.
            "power": {
                "idle_w": cal.idle_w,
                "busy_w": 2 * cal.idle_w,
                "per_decode_token_j": 0.0,
                "per_prefill_token_j": 0.0,
            },
            "frontend": {
                "latency_s": 4 * step0,
                "admit_cpu_s": 2 * step0,
                "admit_cpu_s_per_request": step0 / 20,
            },
            "output_length": (
                {"kind": "lognormal", "mu": output_lengths[0], "sigma": output_lengths[1]}
                if output_lengths
                else {"kind": "max_tokens"}
            ),
        }
    )
    first = fit_timing_and_power(start, cal, fit_max_batch)
    # Steps stretched at the power limit depend on the power fit: a second round starts from the first.
    final = _rounded(fit_timing_and_power(first, cal, fit_max_batch))
    # The report replays the rounded numbers: exactly what the written profile will do.
    return final.with_changes(source={**source, "fit": fit_report(final, cal)})


def _rounded(profile: Profile) -> Profile:
    """Fitted floats cut to 6 significant digits (readable files, stable diffs)."""

    def cut(value):
        if isinstance(value, float):
            return float(f"{value:.6g}")
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return value

    data = profile.model_dump(mode="json")
    return Profile.model_validate({k: v if k == "source" else cut(v) for k, v in data.items()})


def _command_line(args: argparse.Namespace) -> str:
    """How this profile was made, with file names (not this machine's paths)."""
    output = str(args.output) if not args.output.is_absolute() else args.output.name
    words = ["python -m harness.mock.calibrate", args.calibration.name, "-o", output]
    for flag, value in (
        ("--model-config", args.model_config),
        ("--output-lengths", args.output_lengths),
        ("--kv-cache-tokens", args.kv_cache_tokens),
        ("--gpu-memory-gib", args.gpu_memory_gib),
    ):
        if value is not None:
            words += [flag, value.name if isinstance(value, Path) else str(value)]
    words += ["--fit-max-batch", str(args.fit_max_batch)]
    return " ".join(words)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m harness.mock.calibrate",
        description="Fit a mock-server profile to calibration measurements (see the module docstring).",
    )
    parser.add_argument("calibration", type=Path, help="calibration JSON from shared/device/calibrate.py")
    parser.add_argument("-o", "--output", type=Path, required=True, help="profile JSON to write")
    parser.add_argument("--name", help="profile name (default: the output file's stem)")
    parser.add_argument("--description", default="", help="one line for the profile's description")
    parser.add_argument(
        "--model-config", type=Path, help="HF config.json of the served model (KV-cache size)"
    )
    parser.add_argument(
        "--kv-cache-tokens", type=int, help="KV-cache capacity in tokens (instead of deriving it)"
    )
    parser.add_argument(
        "--gpu-memory-gib", type=float, help="GPU memory (default: the 'NNGB' in the GPU name)"
    )
    parser.add_argument(
        "--gpu-memory-utilization", type=float, default=0.9, help="vLLM's setting (default 0.9)"
    )
    parser.add_argument(
        "--activation-reserve-gib", type=float, default=2.0, help="memory for activations and CUDA graphs"
    )
    parser.add_argument(
        "--output-lengths", type=Path, help="trace with output lengths for the EOS distribution"
    )
    parser.add_argument(
        "--fit-max-batch",
        type=int,
        default=64,
        help="largest batch fitted for decode step and energy (default 64)",
    )
    args = parser.parse_args(argv)
    try:
        _run(args)
    except InputError as exc:
        print(f"calibrate: error: {exc}", file=sys.stderr)
        sys.exit(2)


def _kv_capacity(args: argparse.Namespace, cal: Calibration) -> tuple[int, dict | None, str]:
    """KV-cache tokens, the model config it came from (name, SHA-256), and how it was obtained."""
    if args.kv_cache_tokens:
        kv = args.kv_cache_tokens
        return kv, None, f"scheduler.kv_cache_tokens={kv}: given on the command line"
    if not args.model_config:
        raise InputError("give --model-config (to derive the KV-cache size) or --kv-cache-tokens")
    try:
        raw = args.model_config.read_bytes()
        config = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise InputError(f"{args.model_config}: cannot read model config ({exc})") from None
    memory = args.gpu_memory_gib
    if memory is None:
        found = re.search(r"(\d+)\s*GB", cal.gpu)
        if not found:
            raise InputError(
                f"calibration gpu {cal.gpu!r}: no memory size in the name; give --gpu-memory-gib"
            )
        memory = float(found.group(1))
    try:
        kv = kv_cache_tokens(config, memory, args.gpu_memory_utilization, args.activation_reserve_gib)
    except (KeyError, TypeError) as exc:
        raise InputError(f"{args.model_config}: missing or bad field {exc}") from None
    note = (
        f"scheduler.kv_cache_tokens={kv}: derived from {args.model_config.name} (bf16 weights and KV), "
        f"{memory:g} GiB x {args.gpu_memory_utilization:g} utilization, {args.activation_reserve_gib:g} GiB "
        "for activations"
    )
    return kv, {"file": args.model_config.name, "sha256": hashlib.sha256(raw).hexdigest()}, note


def _run(args: argparse.Namespace) -> None:
    cal, sha, notes = load_calibration(args.calibration)
    flags = str(cal.server.get("flags", ""))
    match = re.search(r"--max-model-len[ =](\d+)", flags)
    max_model_len = int(match.group(1)) if match else DEFAULT_MAX_MODEL_LEN
    assumptions = [
        f"scheduler.max_num_seqs={DEFAULT_MAX_NUM_SEQS} and max_num_batched_tokens="
        f"{DEFAULT_MAX_NUM_BATCHED_TOKENS}: vLLM defaults for its OpenAI server on a >= 70 GiB GPU",
        f"scheduler.max_model_len={max_model_len}: "
        + ("from the server flags" if match else "vLLM default (not in the server flags)"),
        "gpu temperature, clocks, utilization windows: assumed, not measured",
    ]
    kv, model_config, kv_note = _kv_capacity(args, cal)
    assumptions.append(kv_note)
    output_lengths = None
    source: dict = {
        "calibration": {
            "file": args.calibration.name,
            "sha256": sha,
            "gpu": cal.gpu,
            "driver": cal.driver,
            "server": cal.server,
            "method": cal.method,
        },
        "model_config": model_config,
        "fitter": "harness.mock.calibrate",
        "command": _command_line(args),
        "method": (__doc__ or "").split("The method:")[1].split("The profile records")[0].strip(),
        "fit_max_batch": args.fit_max_batch,
        "assumptions": assumptions,
        "notes": notes,
    }
    if args.output_lengths:
        lengths = read_output_lengths(args.output_lengths)
        output_lengths = fit_lognormal(lengths)
        source["output_lengths"] = {
            "file": args.output_lengths.name,
            "sha256": hashlib.sha256(args.output_lengths.read_bytes()).hexdigest(),
            "n": len(lengths),
            "method": "lognormal: mu, sigma = mean and std of log(output tokens)",
        }
    else:
        assumptions.append("output_length: every request generates max_tokens (no trace given)")
    name = args.name or args.output.stem
    profile = fit_profile(
        cal,
        name=name,
        source=source,
        kv_tokens=kv,
        max_model_len=max_model_len,
        output_lengths=output_lengths,
        fit_max_batch=args.fit_max_batch,
    )
    server = cal.server.get("engine", "")
    version = re.search(r"\d+\.\d+(\.\d+)?", server)
    profile = profile.with_changes(
        description=args.description or f"Fitted to {args.calibration.name} ({cal.gpu}, {server})",
        engine_version=version.group(0) if version else "",
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(profile.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
