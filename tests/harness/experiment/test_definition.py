"""Experiment files and their flags (harness/experiment/definition.py, cli/experiment_command.py).

Bad input is one line on stderr, `joulebench: error: FILE: FIELD: ...`, exit status 2, no traceback,
and no experiment folder: everything is checked before the folder exists. Runs in-process
(`joulebench_testkit.run_main`) and starts no server, except that a URL target is probed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from joulebench_testkit import free_port, one_line_error, run_main

from foundation.errors import InputError
from harness.experiment import start as start_module
from harness.experiment.definition import (
    COOLDOWN_REAL_S,
    COOLDOWN_SIMULATED_S,
    ExperimentSpec,
    field_docs,
    load_experiment,
)

BASE: dict[str, Any] = {
    "name": "bad",
    "target": "embedded",
    "plan": {"prompts": "synthetic", "n": 3, "max_tokens": 4, "ignore_eos": True},
    "arms": ["fixed:interval=0.25,name=fixed", "bursty:size=3,intra=0.01,gap=0.75,name=bursty"],
    "rates": [4],
    "repeats": 2,
    "cooldown_s": 0.2,
    "cell_reports": False,
}
DROP = object()


def write(tmp_path: Path, **changes: Any) -> Path:
    data = dict(BASE)
    for key, value in changes.items():
        if value is DROP:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_bad(tmp_path: Path, capsys, *args: str, file: Path | None = None) -> str:
    """`experiment run FILE -o OUT ARGS`, which must fail with the one-line contract and leave no
    experiment folder; the message after `joulebench: error: `."""
    out = tmp_path / "out"
    status = run_main(["experiment", "run", str(file or tmp_path / "exp.yaml"), "-o", str(out), *args])
    message = one_line_error(capsys.readouterr().err, status)
    assert "Traceback" not in message
    assert not out.exists() or not any(out.iterdir()), f"an experiment folder was left: {list(out.iterdir())}"
    return message


CASES = {
    "unknown field": ({"colour": "red"}, "colour: unknown field"),
    "wrong type": ({"repeats": "many"}, "repeats: Input should be a valid integer"),
    "missing target": ({"target": DROP}, "target: missing (required)"),
    "missing arms": ({"arms": DROP}, "arms: missing (required)"),
    "no arms": ({"arms": []}, "arms: give at least one arm"),
    "bad schedule in arms[1]": (
        {"arms": ["fixed:interval=0.25", "bursty:size=x"]},
        "arms[1]: bursty: size must be an integer (got 'x')",
    ),
    "arm mapping without kind": ({"arms": ["fixed:interval=0.25", {"size": 3}]}, "arms[1]: needs kind"),
    "rate in plan": ({"plan": {"prompts": "synthetic", "rate": 3}}, "plan: rate: set by the experiment"),
    "seed in plan": ({"plan": {"prompts": "synthetic", "seed": 3}}, "plan: seed: set by the experiment"),
    "bad plan setting": (
        {"plan": {"prompts": "synthetic", "n": 0}},
        "plan.n: Input should be greater than 0",
    ),
    "power with embedded target": ({"power": {"sidecar": "http://127.0.0.1:9"}}, "power/server_info:"),
    "run shard": ({"run": {"shard": "0/2"}}, "run: shard: not a runner setting of a cell"),
    "bad run value": ({"run": {"timeout_s": -1}}, "run: --timeout: must be > 0"),
    "rate given twice": ({"rates": [4, 4]}, "rates: a rate is given twice"),
    "negative rate": ({"rates": [-1]}, "rates: rates must be positive"),
    "bad order": ({"order": "sideways"}, "order: Input should be 'random', 'latin' or 'fixed'"),
    "target mapping of no kind": ({"target": {"port": 8000}}, "target: give 'embedded', a URL"),
    "serve without a model": ({"target": {"serve": "vllm"}}, "target: serve: needs model_path"),
    "stop below repeats": ({"stop": {"half_width": 1, "max_repeats": 1}}, "stop.max_repeats:"),
    "stop field missing": ({"stop": {"max_repeats": 3}}, "stop.half_width: missing (required)"),
    "bad name": ({"name": "a b"}, "name: String should match pattern"),
    "rates alike to 6 digits": ({"rates": [0.1234561, 0.1234562]}, "rates: a rate is given twice"),
    "closed-loop arm in a sweep": (
        {"arms": ["concurrency:n=2,name=seq", "fixed:interval=0.25"]},
        "arms: seq is closed-loop: it takes no offered rate",
    ),
    "own rate in a sweep": (
        {"arms": ["fixed:interval=0.25", "poisson:rate=2,name=p"]},
        "arms: p has its own rate=, which would win over rates",
    ),
    "SLO of zero": ({"slo_ttft_s": 0}, "slo_ttft_s: Input should be greater than 0"),
    "mistyped run setting": ({"run": {"warmup": "x"}}, "run.warmup: Input should be a valid integer"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_experiment_file_is_one_line_naming_file_and_field(tmp_path, capsys, case) -> None:
    changes, expected = CASES[case]
    path = write(tmp_path, **changes)
    message = run_bad(tmp_path, capsys)
    assert message.startswith(f"{path}: {expected}"), message


def test_unreadable_files_are_one_line(tmp_path, capsys) -> None:
    missing = tmp_path / "nope.yaml"
    assert run_bad(tmp_path, capsys, file=missing) == f"{missing}: experiment file not found"
    broken = tmp_path / "broken.yaml"
    broken.write_text("arms: [fixed\n")
    assert run_bad(tmp_path, capsys, file=broken).startswith(f"{broken}: not valid YAML")
    listed = tmp_path / "list.yaml"
    listed.write_text("- fixed:interval=1\n")
    assert run_bad(tmp_path, capsys, file=listed).startswith(f"{listed}: expected a mapping")


def test_url_target_nobody_listens_on_is_one_line_and_no_folder(tmp_path, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    path = write(tmp_path, target=url)
    message = run_bad(tmp_path, capsys)
    assert message.startswith(f"{path}: target: {url}: cannot connect"), message
    # The same through the flag.
    write(tmp_path)
    message = run_bad(tmp_path, capsys, "--target", url)
    assert f"target: {url}: cannot connect" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rates", "2,x"], "--rates '2,x': 'x' is not a number of requests/s"),
        (["--rates", "2,2"], "--rates '2,2': a rate is given twice"),
        (["--rates", "0"], "--rates '0': rates must be positive requests/s"),
        (["--set", "plan.n"], "--set 'plan.n': expected FIELD=VALUE"),
        (["--set", "=3"], "--set '=3': expected FIELD=VALUE"),
        (["--set", "plan.n=[1"], "--set 'plan.n=[1': the value is not valid YAML"),
        (["--set", "bogus.x=1"], "{file}: bogus: unknown field"),
        (["--set", "repeats=many"], "{file}: repeats: Input should be a valid integer"),
        (["--set", "plan.rate=3"], "{file}: plan: rate: set by the experiment"),
        (["--set", "target.port=70000"], "{file}: target.port: Input should be less than or equal to 65535"),
        (["--repeats", "0"], "{file}: repeats: Input should be greater than or equal to 1"),
        (["--order", "sideways"], "{file}: order: Input should be"),
        (["--cooldown", "-1"], "{file}: cooldown_s: Input should be greater than or equal to 0"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, capsys, args, expected) -> None:
    path = write(tmp_path)
    assert run_bad(tmp_path, capsys, *args).startswith(expected.format(file=path))


def test_flags_and_set_override_the_file(tmp_path, capsys, monkeypatch) -> None:
    """Each override reaches the spec the experiment runs (captured where the run would start)."""
    seen: list[ExperimentSpec] = []
    monkeypatch.setattr(start_module, "_start", lambda spec, label, out, console: seen.append(spec) or 0)
    path = write(tmp_path, target=f"http://127.0.0.1:{free_port()}", plan={"prompts": "synthetic", "n": 40})
    args = ["experiment", "run", str(path), "-o", str(tmp_path / "out"),
            "--set", "plan.n=3", "--set", "plan.max_tokens=5", "--set", "target=embedded",
            "--set", "target.mock_args=[--set, step_time.drift_cv=0.1]", "--set", "stop.half_width=0.5",
            "--set", "stop.max_repeats=6", "--rates", "2,4.5", "--repeats", "3", "--order", "latin",
            "--seed", "9", "--cooldown", "0.3"]  # fmt: skip
    assert run_main(args) == 0, capsys.readouterr().err
    (spec,) = seen
    assert spec.plan == {"prompts": "synthetic", "n": 3, "max_tokens": 5}
    assert spec.target.kind == "embedded"
    assert spec.target.mock_args == ["--set", "step_time.drift_cv=0.1"]
    assert spec.stop is not None and (spec.stop.half_width, spec.stop.max_repeats) == (0.5, 6)
    assert spec.rates == [2.0, 4.5] and spec.repeats == 3 and spec.order == "latin"
    assert spec.seed == 9 and spec.gap_s == 0.3
    assert spec.arm_names == ["fixed", "bursty"]
    assert not (tmp_path / "out").exists()


def test_load_experiment_overrides_and_defaults(tmp_path) -> None:
    path = write(tmp_path, cooldown_s=DROP, target="http://127.0.0.1:9")
    spec = load_experiment(path, {"plan.n": 5, "target.model": "m"})
    assert spec.plan["n"] == 5 and spec.plan["max_tokens"] == 4
    assert spec.target.kind == "url" and spec.target.url == "http://127.0.0.1:9" and spec.target.model == "m"
    assert spec.gap_s == COOLDOWN_REAL_S  # a real server's default cool-down
    assert load_experiment(write(tmp_path, cooldown_s=DROP)).gap_s == COOLDOWN_SIMULATED_S
    assert COOLDOWN_SIMULATED_S < COOLDOWN_REAL_S  # the mock's counter is exact
    assert spec.plan_spec(4.0, "x").rate == 4.0
    with pytest.raises(InputError, match=r"exp\.yaml: plan\.n: "):
        load_experiment(path, {"plan.n": -1})


def test_field_docs_list_every_setting_nested_ones_dotted() -> None:
    docs = {name: (default, text) for name, default, text in field_docs()}
    for name in ("target", "target.kind", "target.mock_args", "power.sidecar", "arms", "rates", "repeats",
                 "order", "cooldown_s", "stop.half_width", "stop.max_repeats", "steady_state.skip_s",
                 "cell_reports", "run"):  # fmt: skip
        assert name in docs, name
    assert docs["target"][0] == "required" and docs["arms"][0] == "required"
    fields = ExperimentSpec.model_fields
    for name in ("name", "repeats", "order", "seed", "cell_reports", "level"):
        assert yaml.safe_load(docs[name][0]) == fields[name].default, (name, docs[name])
    assert all(text for _, text in docs.values()), [n for n, (_, t) in docs.items() if not t]


def test_resume_and_report_of_a_folder_that_is_not_an_experiment(tmp_path, capsys) -> None:
    for command in ("resume", "report"):
        status = run_main(["experiment", command, str(tmp_path)])
        message = one_line_error(capsys.readouterr().err, status)
        assert message == f"{tmp_path}: not a joulebench experiment folder (no experiment.yaml)"


def test_a_damaged_experiment_yaml_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "experiment.yaml").write_text("name: [unclosed\n")
    for command in ("resume", "report"):
        status = run_main(["experiment", command, str(tmp_path)])
        message = one_line_error(capsys.readouterr().err, status)
        assert message.startswith(f"{tmp_path / 'experiment.yaml'}: not readable YAML")


def test_serve_secrets_stay_out_of_experiment_yaml() -> None:
    from harness.experiment.conduct import resolved_data
    from harness.experiment.definition import parse_experiment

    target = {"serve": "vllm", "model_path": "/m", "env": {"HF_TOKEN": "hf_x1"},
              "args": ["--api-key", "sk-x2", "--dtype", "bfloat16"]}  # fmt: skip
    data = {**BASE, "rates": None, "target": target}
    written = yaml.safe_dump(resolved_data(parse_experiment(data, "t", check_plans=False)))
    assert "hf_x1" not in written and "sk-x2" not in written and "bfloat16" in written


def test_plan_policies_make_the_arms_schedules_times_policies(tmp_path) -> None:
    plan = {**BASE["plan"], "policies": ["passthrough", "window:period=0.5"]}
    spec = load_experiment(write(tmp_path, plan=plan))
    assert spec.arm_names == [
        "fixed+passthrough",
        "fixed+window-0.5s",
        "bursty+passthrough",
        "bursty+window-0.5s",
    ]
    # The cells are the plan's arms: each one's name is an arm of the plan the experiment builds.
    built = spec.plan_spec(4.0, "exp.yaml").arm_names
    assert built == spec.arm_names


def test_a_bad_plan_policy_names_the_field(tmp_path, capsys) -> None:
    write(tmp_path, plan={**BASE["plan"], "policies": ["window:period=-1"]})
    assert run_bad(tmp_path, capsys).endswith(
        "exp.yaml: plan.policies[0]: window: period: input should be greater than 0 (got '-1')"
    )
    write(tmp_path, plan={**BASE["plan"], "policies": "passthrough"}, arms=["concurrency:n=2"], rates=DROP)
    assert "exp.yaml: plan.policies: arm 'concurrency' is closed loop" in run_bad(tmp_path, capsys)


def test_a_tensor_parallel_serve_target_starts_on_the_gpus_power_sums() -> None:
    from harness.experiment.definition import parse_experiment
    from harness.experiment.targets import _serving_gpus

    def spec(tp: int | None, gpus: str, serve: str = "vllm") -> ExperimentSpec:
        target = {"serve": serve, "model_path": "/m", "tensor_parallel_size": tp}
        data = {
            **BASE,
            "rates": None,
            "target": target,
            "power": {"sidecar": "http://127.0.0.1:9", "gpus": gpus},
        }
        return parse_experiment(data, "t", check_plans=False)

    assert _serving_gpus(spec(2, "2,3")) == [2, 3]
    assert spec(2, "2,3").target.settings()["tensor_parallel_size"] == 2
    with pytest.raises(InputError, match=r"power.gpus: --gpus 0: 1 GPU\(s\), but tensor parallel 2"):
        _serving_gpus(spec(2, "0"))
    with pytest.raises(InputError, match="tensor_parallel_size: only for serve: vllm"):
        spec(2, "0,1", serve="transformers")


def test_a_serve_target_choosing_its_own_gpus_must_choose_power_gpus() -> None:
    from harness.experiment.definition import parse_experiment
    from harness.experiment.targets import _serving_gpus

    def spec(env: dict[str, str]) -> ExperimentSpec:
        target = {"serve": "vllm", "model_path": "/m", "tensor_parallel_size": 2, "env": env}
        power = {"sidecar": "http://127.0.0.1:9", "gpus": "2,3"}
        return parse_experiment(
            {**BASE, "rates": None, "target": target, "power": power}, "t", check_plans=False
        )

    assert _serving_gpus(spec({"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})) is None
    for env in (
        {"CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
    ):
        with pytest.raises(InputError, match=r"target.env: CUDA_VISIBLE_DEVICES=.* must list power.gpus"):
            _serving_gpus(spec(env))
