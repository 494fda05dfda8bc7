"""The server under test, brought up once for a whole experiment and always taken down after it.

- embedded: `joulebench mock-server` and a simulated sidecar (harness.session.embedded_stack)
- url: a server someone else runs (nothing started, nothing stopped)
- serve: vLLM, TGI or transformers started natively (harness.deploy.native), its server.json in the
  experiment folder; vLLM on the GPUs of `power.gpus`, the ones the cells' energy is summed over
- compose: `docker compose --profile P up -d` and, at the end, `down` of the same profile

Every cell of the experiment talks to the same server, so what differs between cells is the arm, not
a server start (a cold server would bias whichever arm runs first).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from foundation.errors import InputError
from harness.deploy.health import ServerError, wait_http_healthy
from harness.deploy.native import NativeServer, tgi_spec, transformers_spec, vllm_spec
from harness.deploy.parallel import parallel_args
from harness.experiment.definition import ExperimentSpec, TargetSpec
from harness.session.config import PowerConfig, TargetConfig, parse_gpu_list


@dataclass(frozen=True)
class LiveTarget:
    target: TargetConfig
    power: PowerConfig
    server_info: Path | None  # server.json of a natively started server
    simulated: bool  # the embedded mock: figures are a simulation's


@contextmanager
def bring_up(spec: ExperimentSpec, server_dir: Path, console: Console) -> Iterator[LiveTarget]:
    target = spec.target
    config = TargetConfig(
        url=target.url, backend=target.backend, model=target.model, api_key_env=target.api_key_env
    )
    power = _power(spec)
    info = Path(spec.server_info) if spec.server_info else None
    if target.kind == "embedded":
        from harness.session.embedded_stack import EmbeddedStack

        with EmbeddedStack(console, tuple(target.mock_args)) as stack:
            stack.folder = server_dir.parent  # the mock's and sidecar's logs land in the experiment folder
            yield LiveTarget(
                replace(config, url=stack.mock_url), replace(power, sidecar=stack.sidecar_url), None, True
            )
    elif target.kind == "serve":
        if target.serve == "transformers":
            # It serves only the model it preloaded, under the name it was given; its /v1/models
            # lists the Hugging Face cache folder instead (500 where there is none): name both.
            backend = "openai-chat" if config.backend == "auto" else config.backend
            config = replace(config, model=config.model or target.model_path, backend=backend)
        with _native(target, server_dir, console, _serving_gpus(spec)) as url:
            yield LiveTarget(replace(config, url=url), power, server_dir / "server.json", False)
    elif target.kind == "compose":
        with _compose(target, console):
            yield LiveTarget(config, power, info, False)
    else:
        yield LiveTarget(config, power, info, False)


def _power(spec: ExperimentSpec) -> PowerConfig:
    p = spec.power
    try:
        return PowerConfig(
            sidecar=p.sidecar,
            prometheus=p.prometheus,
            dcgm=p.dcgm,
            primary=p.primary,
            selector=p.selector,
            gpus=parse_gpu_list(p.gpus),
            prometheus_step_s=p.prometheus_step_s,
        ).validate()
    except InputError as exc:
        raise InputError(f"power: {exc}") from None


def _serving_gpus(spec: ExperimentSpec) -> list[int] | None:
    """The GPUs a `serve: vllm` target starts on: `power.gpus`, the same GPUs the cells' energy is summed
    over (None: all); as many as its `tensor_parallel_size` (or `--tensor-parallel-size` in `args`; x
    `--pipeline-parallel-size`) split the model over. A target whose env sets CUDA_VISIBLE_DEVICES
    itself must name the same GPUs in the sidecar's (PCI bus) order, or the energy would be summed over
    GPUs that do not serve."""
    target, listed = spec.target, parse_gpu_list(spec.power.gpus)
    if target.serve != "vllm" or listed is None:
        return None
    if "CUDA_VISIBLE_DEVICES" in target.env:
        own = [g.strip() for g in target.env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
        if own != list(listed) or target.env.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
            raise InputError(
                f"target.env: CUDA_VISIBLE_DEVICES={target.env['CUDA_VISIBLE_DEVICES']} must list power.gpus "
                f"({','.join(listed)}) with CUDA_DEVICE_ORDER=PCI_BUS_ID, or be left out (power.gpus then "
                "chooses the serving GPUs)"
            )
        return None
    gpus = [int(g) for g in listed]
    try:
        parallel_args(target.args, target.env, target.tensor_parallel_size, gpus)
    except InputError as exc:
        raise InputError(f"power.gpus: {exc} (target.args, target.tensor_parallel_size)") from None
    return gpus


@contextmanager
def _native(target: TargetSpec, out: Path, console: Console, gpus: list[int] | None) -> Iterator[str]:
    assert target.model_path is not None
    if target.serve == "tgi":
        launch = tgi_spec(target.model_path, port=target.port, extra_args=target.args, env=target.env)
    elif target.serve == "transformers":
        # Continuous batching on, as `joulebench serve transformers` has it, unless args turn it off.
        launch = transformers_spec(
            target.model_path, port=target.port, extra_args=target.args, env=target.env,
            continuous_batching="--no-continuous-batching" not in target.args,
        )  # fmt: skip
    else:
        launch = vllm_spec(
            target.model_path, port=target.port, extra_args=target.args, env=target.env, gpus=gpus,
            python=target.python or sys.executable, tensor_parallel_size=target.tensor_parallel_size,
        )  # fmt: skip
    server = NativeServer(launch, out_dir=out, health_timeout_s=target.health_timeout_s)
    try:
        with console.status(f"starting {target.describe()}"):
            server.start()
            waited = server.wait_healthy()
        console.print(f"server healthy after {waited:.0f} s: {server.base_url} (log: {server.log_path})")
        yield server.base_url
    except ServerError as exc:
        raise InputError(f"target: {exc}") from None
    finally:
        server.stop()


@contextmanager
def _compose(target: TargetSpec, console: Console) -> Iterator[None]:
    docker = shutil.which("docker")
    if docker is None:
        raise InputError("target.compose: needs the docker CLI with its compose plugin on PATH")
    base = [docker, "compose", "-f", target.compose_file, "--profile", str(target.compose)]
    _compose_call([*base, "up", "-d", "--wait"], "up")
    try:
        assert target.url is not None
        wait_http_healthy(target.url.rstrip("/") + "/health", timeout_s=target.health_timeout_s)
        console.print(f"compose profile {target.compose} healthy at {target.url}")
        yield
    except ServerError as exc:
        raise InputError(f"target.compose: {exc}") from None
    finally:
        _compose_call([*base, "down"], "down")


def _compose_call(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise InputError(f"target.compose: docker compose {what} failed ({done.returncode}): {last[0][:300]}")
