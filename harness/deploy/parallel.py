"""vLLM across several GPUs: `--tensor-parallel-size` and which GPUs serve (`CUDA_VISIBLE_DEVICES`).

A model served across N GPUs draws power on all N, and the energy join must sum exactly those (the
run's `--gpus`). The GPU indices a user gives here are the sidecar's (NVML's, in PCI bus order), so the
server is started with `CUDA_DEVICE_ORDER=PCI_BUS_ID`: without it CUDA numbers the GPUs fastest first,
and CUDA's GPU 0 need not be NVML's GPU 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from foundation.errors import InputError
from harness.deploy.cmdline import parse_flags

TP_FLAGS = ("--tensor-parallel-size", "-tp")
PP_FLAGS = ("--pipeline-parallel-size", "-pp")
DP_FLAGS = ("--data-parallel-size", "-dp")  # replicas on this host, each on tp x pp GPUs of its own


def parallel_args(
    extra_args: Sequence[str],
    env: Mapping[str, str],
    tensor_parallel_size: int | None,
    gpus: Sequence[int] | None,
) -> tuple[list[str], dict[str, str]]:
    """vLLM's flags and environment with the tensor-parallel size and the serving GPUs applied."""
    args, out_env = list(extra_args), dict(env)
    # A bad value: one line now, not at start.
    tp, pp, dp = flag_int(args, TP_FLAGS), flag_int(args, PP_FLAGS), flag_int(args, DP_FLAGS)
    if tensor_parallel_size is not None:
        if tensor_parallel_size < 1:
            raise InputError(f"--tensor-parallel-size: expected 1 or more GPUs, got {tensor_parallel_size}")
        if tp is not None:
            raise InputError("--tensor-parallel-size: given twice (also among vLLM's own flags)")
        args, tp = ["--tensor-parallel-size", str(tensor_parallel_size), *args], tensor_parallel_size
    if gpus is not None:
        if "CUDA_VISIBLE_DEVICES" in out_env:
            raise InputError("--gpus: CUDA_VISIBLE_DEVICES is set with --env too; give the GPUs once")
        if out_env.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID") != "PCI_BUS_ID":  # CUDA's indices, not NVML's
            raise InputError(
                f"--gpus: CUDA_DEVICE_ORDER={out_env['CUDA_DEVICE_ORDER']} (--env) numbers the GPUs "
                "otherwise than the sidecar (PCI bus order): leave it out"
            )
        tp, pp, dp = tp or 1, pp or 1, dp or 1
        if len(gpus) != tp * pp * dp:
            listed = ",".join(map(str, gpus))
            raise InputError(
                f"--gpus {listed}: {len(gpus)} GPU(s), but tensor parallel {tp} x pipeline parallel {pp} "
                f"x data parallel {dp} uses {tp * pp * dp}: the run's energy must be summed over exactly "
                "the GPUs that serve"
            )
        out_env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        out_env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return args, out_env


def flag_int(args: Sequence[str], names: Sequence[str]) -> int | None:
    """The integer value of the first of `names` among `args` (None: not given); one-line error if not one."""
    flags = parse_flags(args)
    for name in names:
        if name in flags:
            value = flags[name]
            try:
                return int(str(value[-1] if isinstance(value, list) else value))
            except ValueError:
                raise InputError(f"{name}: expected a whole number of GPUs, got {value!r}") from None
    return None
