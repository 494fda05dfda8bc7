"""`joulebench plan build|describe` through the real CLI: the acceptance commands, --help, bad input."""

import json

import joulebench_testkit
import pytest
from joulebench_testkit import REPO, SHARED_DATA, run_joulebench

from traffic.plan import load_plan
from traffic.schedules import KINDS
from traffic.shaping import param_docs

ULTRACHAT = "../shared/data/prompts/ultrachat/ultrachat_prompts.jsonl"
AZURE = "../shared/data/traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv"

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"shared test data not found at {SHARED_DATA}"
)


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = joulebench_testkit.run_main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_shared
@pytest.mark.slow
def test_acceptance_commands(tmp_path):
    p, arms, t = tmp_path / "p.parquet", tmp_path / "arms.parquet", tmp_path / "t.parquet"
    first = run_joulebench(
        "plan", "build", "--prompts", "synthetic", "--schedule", "uniform:low=0.1,high=0.5", "--n", "1000",
        "--seed", "7", "--out", str(p),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    second = run_joulebench(
        "plan", "build", "--prompts", ULTRACHAT, "--schedule", "fixed:interval=0.5",
        "--schedule", "uniform:low=0.1,high=0.5", "--schedule", "bursty:size=8,intra=0.01,gap=2.4",
        "--rate", "2", "--n", "300", "--seed", "1", "--max-tokens", "128", "--ignore-eos", "--out", str(arms),
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    third = run_joulebench(
        "plan", "build", "--prompts", "synthetic",
        "--schedule", f"trace:path={AZURE},format=azure,time_scale=0.5", "--duration", "60", "--out", str(t),
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    described = run_joulebench("plan", "describe", str(p), "--json")
    assert described.returncode == 0, described.stderr
    summary = json.loads(described.stdout)
    for key in ("n", "duration_s", "mean_rate", "gap_cv", "plan_hash", "arms"):
        assert key in summary
    assert summary["n"] == 1000 and summary["plan_hash"] == load_plan(p).header.plan_hash
    assert summary["mean_rate"] == pytest.approx(1 / 0.3, rel=0.05)

    multi = load_plan(arms)
    assert multi.header.n == 900 and {a.name for a in multi.header.arms} == {"fixed", "uniform", "bursty"}
    assert all(a.mean_rate == pytest.approx(2.0) for a in multi.header.arms)
    assert set(multi.rows["max_tokens"]) == {128} and multi.rows["ignore_eos"].all()
    replay = load_plan(t)
    assert replay.rows["offset_s"].max() < 60 and replay.header.arms[0].params["time_scale"] == 0.5
    # The table form names every arm.
    table = run_joulebench("plan", "describe", str(arms))
    assert table.returncode == 0 and all(name in table.stdout for name in ("fixed", "uniform", "bursty"))


def test_same_seed_same_file_hash(tmp_path, capsys):
    hashes = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        code, _, err = run_main(
            capsys,
            "plan",
            "build",
            "--schedule",
            "poisson:rate=5",
            "-n",
            "200",
            "--seed",
            seed,
            "--out",
            str(tmp_path / f"{name}.parquet"),
            "--quiet",
        )
        assert code == 0, err
        hashes.append(load_plan(tmp_path / f"{name}.parquet").header.plan_hash)
    assert hashes[0] == hashes[1] != hashes[2]


def test_yaml_config_with_flag_overrides(tmp_path, capsys):
    config = tmp_path / "plan.yaml"
    config.write_text("n: 50\nseed: 2\nschedules:\n  - {kind: gamma, rate: 4, cv: 2}\n  - concurrency:n=2\n")
    code, _, err = run_main(
        capsys, "plan", "build", "--config", str(config), "--n", "20", "--out", str(tmp_path / "plan.parquet")
    )
    assert code == 0, err
    plan = load_plan(tmp_path / "plan.parquet")
    assert plan.header.n == 40 and [a.kind for a in plan.header.arms] == ["gamma", "concurrency"]
    assert plan.header.seed == 2


def test_help_documents_every_flag_and_schedule(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_main(capsys, "plan", "build", "--help")
    assert code == 0
    for flag in (
        "--prompts",
        "--field",
        "--conversation",
        "--tokenizer",
        "--sample",
        "--replace",
        "--min-prompt-chars",
        "--max-prompt-chars",
        "--min-prompt-tokens",
        "--max-prompt-tokens",
        "--polite",
        "--max-tokens",
        "--ignore-eos",
        "--temperature",
        "--schedule",
        "--policy",
        "--rate",
        "--n",
        "--duration",
        "--seed",
        "--config",
        "--out",
    ):
        assert flag in out
    for kind in KINDS.values():
        assert f"{kind.name}:" in out
        for key in kind.keys:
            assert f"{key.name}:" in out or key.name == "name"
    for kind, _, params in param_docs():  # every policy, with its parameters
        line = next(line for line in out.splitlines() if line.strip().startswith(kind))
        assert all(name in line for name, _, _ in params), line
    assert "U[low, high]" in out  # rich markup must not eat brackets
    assert "0.5 replays twice as fast" in out


@pytest.fixture
def bad_trace(tmp_path):
    path = tmp_path / "bad_trace.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,3,4\nyesterday,5,6\n"
    )
    return path


@pytest.fixture
def empty_prompts(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    return path


BAD_INPUTS = [
    (["--prompts", "missing.jsonl", "-n", "5"], "--prompts: missing.jsonl: prompt file not found"),
    (["--prompts", ULTRACHAT, "--field", "question", "-n", "5"], "field 'question' not found"),
    (["--prompts", "EMPTY", "-n", "5"], "no prompts in the source"),
    (
        ["--schedule", "fixed:interval=0", "-n", "5"],
        "--schedule 'fixed:interval=0': fixed: interval must be > 0",
    ),
    (["--schedule", "uniform:low=-0.1,high=0.5", "-n", "5"], "low must be >= 0"),
    (["--schedule", "bursty:size=8,intra=0.01,gap=-2", "-n", "5"], "gap must be > 0"),
    (["--schedule", "uniform:low=0.5,high=0.1", "-n", "5"], "low (0.5) must be < high (0.1)"),
    (["--schedule", "TRACE", "--duration", "10"], "line 3: TIMESTAMP 'yesterday' is not a timestamp"),
    (["--schedule", "sawtooth:period=1", "-n", "5"], "unknown schedule kind 'sawtooth'"),
    (
        ["--schedule", "fixed:interval=1", "--schedule", "uniform:low=0.1,high=0.5,jitter=1", "-n", "5"],
        "--schedule 'uniform:low=0.1,high=0.5,jitter=1': uniform: unknown key 'jitter'",
    ),
    (["-n", "-5"], "--n: Input should be greater than 0"),
    (["-n", "many"], "--n: Input should be a valid integer"),
    (["-n", "5", "--rate", "0"], "--rate: Input should be greater than 0"),
    (["-n", "5", "--ignore-eos"], "ignore_eos: needs max_tokens"),
    (["-n", "5", "--field", "x=y", "--prompts", ULTRACHAT], "--field: unknown role 'x'"),
    (["-n", "5", "--config", "missing.yaml"], "missing.yaml: plan spec file not found"),
    (["-n", "5", "--policy", "window:T=1"], "--policy 'window:T=1': window: unknown parameter 'T'"),
    (["-n", "5", "--policy", "passthrough", "--policy", "hold"], "--policy 'hold': unknown policy 'hold'"),
    (
        ["-n", "5", "--schedule", "concurrency:n=2", "--policy", "passthrough"],
        "--policy: arm 'concurrency' is closed loop",
    ),
]


@needs_shared
@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS)
def test_bad_input_gives_one_line_and_writes_nothing(
    tmp_path, capsys, monkeypatch, bad_trace, empty_prompts, args, expected
):
    monkeypatch.chdir(REPO)  # the relative ../shared paths, as in the acceptance commands
    args = [
        str(empty_prompts) if a == "EMPTY" else f"trace:path={bad_trace}" if a == "TRACE" else a for a in args
    ]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_main(capsys, "plan", "build", *args, "--out", str(out_dir / "plan.parquet"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("joulebench: error: ") and expected in lines[0], lines[0]
    assert list(out_dir.iterdir()) == []  # no plan, no header copy, no temporary file


@needs_shared
def test_bad_input_through_the_installed_script(tmp_path, bad_trace):
    result = run_joulebench(
        "plan", "build", "--schedule", f"trace:path={bad_trace}", "--out", str(tmp_path / "plan.parquet")
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "is not a timestamp" in result.stderr
    assert not (tmp_path / "plan.parquet").exists()


def test_out_must_be_a_parquet_file(tmp_path, capsys):
    code, _, err = run_main(capsys, "plan", "build", "-n", "3", "--out", str(tmp_path / "plan.csv"))
    assert code == 2 and "must end in .parquet" in err
    assert list(tmp_path.iterdir()) == []


def test_out_in_a_folder_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the plan's folder would go")
    out = blocker / "sub" / "plan.parquet"
    code, _, err = run_main(capsys, "plan", "build", "-n", "3", "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"joulebench: error: --out {out}: cannot write the plan")


def test_describe_rejects_missing_and_damaged_plans(tmp_path, capsys):
    code, _, err = run_main(capsys, "plan", "describe", str(tmp_path / "nope.parquet"))
    assert code == 2 and err.strip() == f"joulebench: error: {tmp_path / 'nope.parquet'}: plan file not found"
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really")
    code, _, err = run_main(capsys, "plan", "describe", str(damaged), "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "damaged.parquet: not a readable Parquet file" in err


def test_plan_options_can_be_shared_by_another_command(tmp_path):
    """The same flags on a second command (as `joulebench run` uses them), without re-declaring them."""
    import typer
    from typer.testing import CliRunner

    from harness.cli.plan_flags import PlanOptions, plan_options

    app = typer.Typer()
    seen: dict = {}

    @app.command()
    @plan_options
    def run(target: str, plan: PlanOptions, dry: bool = False) -> None:
        seen["target"], seen["given"], seen["dry"] = target, plan.given(), dry
        if plan.given():
            seen["spec"] = plan.to_spec()

    runner = CliRunner()
    result = runner.invoke(app, ["http://x", "--schedule", "poisson:rate=3", "--n", "7", "--dry"])
    assert result.exit_code == 0, result.output
    assert seen["target"] == "http://x" and seen["dry"] and seen["given"]
    assert seen["spec"].schedules == ["poisson:rate=3"] and seen["spec"].n == 7
    result = runner.invoke(app, ["http://y"])
    assert result.exit_code == 0 and seen["given"] is False
