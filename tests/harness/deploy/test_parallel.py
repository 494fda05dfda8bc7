"""vLLM across several GPUs (harness/deploy/parallel.py): `--tensor-parallel-size` and the serving GPUs,
as `joulebench serve vllm` and an experiment's `serve: vllm` target start it."""

from __future__ import annotations

import pytest

from foundation.errors import InputError
from harness.deploy.native import vllm_spec
from harness.experiment.definition import ExperimentSpec
from harness.experiment.targets import _serving_gpus


def test_tensor_parallel_size_and_gpus_start_vllm_on_exactly_those_gpus() -> None:
    spec = vllm_spec("/m", extra_args=["--dtype", "bfloat16"], tensor_parallel_size=2, gpus=[2, 3])
    assert spec.argv[3:] == ("--model", "/m", "--host", "127.0.0.1", "--port", "8000",
                             "--tensor-parallel-size", "2", "--dtype", "bfloat16")  # fmt: skip
    # The sidecar's indices are NVML's (PCI bus order): CUDA must count the same way.
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    # The size may come with vLLM's own flags too, and pipeline parallel multiplies the GPUs it needs.
    spec = vllm_spec("/m", extra_args=["-tp", "2", "--pipeline-parallel-size=2"], gpus=[0, 1, 2, 3])
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tensor_parallel_size": 2, "gpus": [0]}, r"--gpus 0: 1 GPU\(s\), but tensor parallel 2 x pipeline"),
        ({"extra_args": ["--tensor-parallel-size", "2"], "tensor_parallel_size": 2}, "given twice"),
        ({"extra_args": ["-tp", "two"]}, "-tp: expected a whole number"),
        ({"tensor_parallel_size": 0}, "--tensor-parallel-size: expected 1 or more"),
        ({"gpus": [0], "env": {"CUDA_VISIBLE_DEVICES": "1"}}, "--gpus: CUDA_VISIBLE_DEVICES is set"),
    ],
)
def test_inconsistent_gpu_settings_get_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        vllm_spec("/m", **kwargs)


def _experiment(target: dict, gpus: str | None) -> ExperimentSpec:
    return ExperimentSpec.model_validate(
        {"target": target, "power": {"gpus": gpus}, "arms": ["fixed:interval=1"]}
    )


def test_a_serve_vllm_target_runs_on_the_gpus_its_energy_is_summed_over() -> None:
    target = {"serve": "vllm", "model_path": "/m", "args": ["--tensor-parallel-size", "2"]}
    assert _serving_gpus(_experiment(target, "0,1")) == [0, 1]
    assert _serving_gpus(_experiment(target, None)) is None  # all GPUs: vLLM picks, as before
    own = {"CUDA_VISIBLE_DEVICES": "4,5", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}  # the target chose them itself
    assert _serving_gpus(_experiment({**target, "env": own}, "4,5")) is None
    with pytest.raises(InputError, match=r"^power\.gpus: --gpus 0: 1 GPU\(s\), but tensor parallel 2"):
        _serving_gpus(_experiment(target, "0"))


def test_data_parallel_replicas_count_among_the_serving_gpus() -> None:
    # Two replicas of a tensor-parallel-2 model serve on four GPUs, all of which the run must sum.
    spec = vllm_spec("/m", extra_args=["-tp", "2", "--data-parallel-size", "2"], gpus=[0, 1, 2, 3])
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    with pytest.raises(InputError, match=r"x data parallel 2 uses 4"):
        vllm_spec("/m", extra_args=["-tp", "2", "-dp=2"], gpus=[0, 1])


def test_a_cuda_order_other_than_the_sidecars_is_refused() -> None:
    # FASTEST_FIRST would make --gpus 0,1 CUDA's fastest GPUs, not the sidecar's GPUs 0 and 1.
    with pytest.raises(InputError, match=r"^--gpus: CUDA_DEVICE_ORDER=FASTEST_FIRST \(--env\)"):
        vllm_spec("/m", gpus=[0], env={"CUDA_DEVICE_ORDER": "FASTEST_FIRST"})
    same = vllm_spec("/m", gpus=[0], env={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert same.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
