"""Hugging Face datasets by name, against a loopback stand-in for the Hub (tests/traffic/hub_standin.py).

`joulebench plan build` runs as a subprocess with HF_ENDPOINT at the stand-in and its own HF_HOME
(`datasets` reads both when it is imported): the download, the cache, the split rule, --offline and the
`ultrachat` shortcut go through the real libraries and real HTTP. The stand-in serves a small
HuggingFaceH4/ultrachat_200k (splits train_sft and test_sft, like the real one, from the shared sample
of real UltraChat prompts) and joulebench/eval_only (validation and test: no split the rule can pick).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hub_standin import HubStandIn, Repo, parquet_dataset
from joulebench_testkit import REPO, joulebench_argv, one_line_error, run_main, side_by_side

from foundation.errors import InputError
from harness.session.embedded_stack import DEFAULT_PLAN
from traffic.plan import Plan, load_plan
from traffic.prompts.hf import choose_split
from traffic.spec import PlanSpec

ULTRACHAT = "HuggingFaceH4/ultrachat_200k"
# Of the 70 prompts: train_sft; the other 10 are test_sft. As many as the built-in plan's n, so that
# README's `joulebench run --prompts ultrachat` (the built-in arms, without replacement) builds here.
TRAIN_ROWS = 60


@dataclass
class Hub:
    standin: HubStandIn
    ultrachat: Repo
    train_prompts: list[str]


@pytest.fixture(scope="module")
def hub(ultrachat: Path) -> Iterator[Hub]:
    pytest.importorskip("datasets")
    prompts = [json.loads(line)["prompt"] for line in ultrachat.read_text(encoding="utf-8").splitlines()][
        : TRAIN_ROWS + 10
    ]
    rows = [_ultrachat_row(prompt) for prompt in prompts]
    standin = HubStandIn().start()
    repo = standin.add(
        ULTRACHAT, parquet_dataset({"train_sft": rows[:TRAIN_ROWS], "test_sft": rows[TRAIN_ROWS:]})
    )
    standin.add("joulebench/eval_only", parquet_dataset({"validation": rows[:5], "test": rows[5:10]}))
    yield Hub(standin, repo, prompts[:TRAIN_ROWS])
    standin.stop()


def _ultrachat_row(prompt: str) -> dict[str, Any]:
    # UltraChat 200k's columns: the first user turn, its sha256 as id, and the whole conversation.
    return {
        "prompt": prompt,
        "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
        "messages": [{"content": prompt, "role": "user"}, {"content": "A reply.", "role": "assistant"}],
    }


@dataclass
class Build:
    home: Path  # its HF_HOME
    out: Path
    result: subprocess.CompletedProcess

    def plan(self) -> Plan:
        return load_plan(self.out)

    def error(self) -> str:
        """The one error line, after checking the bad-input contract: exit 2, nothing written."""
        assert list(self.out.parent.iterdir()) == []
        return one_line_error(self.result.stderr, self.result.returncode)


# name -> (HF_HOME folder, which hub, --prompts and more flags); every build runs at once with the others,
# one per core, except `offline_cached`, which reads what `online` cached. Six builds: about 12 s on 2
# cores, so the tests that read them are marked slow.
_BUILDS: dict[str, tuple[str, str, list[str]]] = {
    "online": ("online", "hub", ["--prompts", "ultrachat", "--n", str(TRAIN_ROWS)]),
    "offline_uncached": ("empty", "silent", ["--prompts", "ultrachat", "--n", "5", "--offline"]),
    "unknown_split": ("split", "hub", ["--prompts", f"hf:{ULTRACHAT},split=train", "--n", "5"]),
    "no_split": ("no_split", "hub", ["--prompts", f"hf:{ULTRACHAT}", "--n", "5"]),
    "no_obvious_split": ("eval", "hub", ["--prompts", "hf:joulebench/eval_only", "--n", "5"]),
}
_AFTER_ONLINE = {
    "offline_cached": ("online", "silent", ["--prompts", "ultrachat", "--n", str(TRAIN_ROWS), "--offline"]),
}


@pytest.fixture(scope="module")
def silent() -> Iterator[HubStandIn]:
    """The endpoint of offline builds: a stand-in with no dataset, whose `served` shows any request."""
    standin = HubStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def builds(hub: Hub, silent: HubStandIn, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    root = tmp_path_factory.mktemp("builds")
    endpoints = {"hub": hub.standin.url, "silent": silent.url}

    def build(case: tuple[str, tuple[str, str, list[str]]]) -> Build:
        name, (home, endpoint, flags) = case
        out = root / name / "plan.parquet"
        out.parent.mkdir()
        result = subprocess.run(
            joulebench_argv("plan", "build", "--seed", "1", "--out", str(out), "--quiet", *flags),
            cwd=REPO, env=_hf_env(root / home, endpoints[endpoint]), capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        return Build(root / home, out, result)

    done = dict(zip(_BUILDS, side_by_side(build, _BUILDS.items()), strict=True))
    done.update(zip(_AFTER_ONLINE, side_by_side(build, _AFTER_ONLINE.items()), strict=True))
    return done


def _hf_env(home: Path, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, COLUMNS="200")
    return env


@pytest.fixture(scope="module")
def cached(builds: dict[str, Build], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An HF_HOME holding what the online build cached (a copy: the tests below add to it)."""
    home = tmp_path_factory.mktemp("cached") / "home"
    shutil.copytree(builds["online"].home, home, symlinks=True)
    return home


@pytest.mark.slow
def test_ultrachat_downloads_its_sft_prompts(hub: Hub, builds: dict[str, Build]) -> None:
    online = builds["online"]
    assert online.result.returncode == 0, online.result.stderr + "\n".join(hub.standin.unknown)
    plan = online.plan()
    assert sorted(plan.rows["prompt"]) == sorted(hub.train_prompts)
    source = plan.header.prompt_source
    assert source["spec"] == "ultrachat"
    assert source["kind"] == "hf"
    assert source["fields"] == {"id": "prompt_id", "prompt": "prompt"}  # the prompt column, not messages
    assert source["provenance"] == {
        "dataset": ULTRACHAT, "config": "default", "split": "train_sft", "revision": hub.ultrachat.sha,
    }  # fmt: skip
    arrow = list((online.home / "datasets").rglob("ultrachat_200k-train_sft.arrow"))
    assert len(arrow) == 1 and hub.ultrachat.sha in str(arrow[0])  # the cache entry of that commit
    assert source["content_hash"] == f"sha256:{hashlib.sha256(arrow[0].read_bytes()).hexdigest()}"


@pytest.mark.slow
def test_offline_build_reads_the_cache_only(silent: HubStandIn, builds: dict[str, Build]) -> None:
    offline = builds["offline_cached"]
    assert offline.result.returncode == 0, offline.result.stderr
    online = builds["online"].plan()
    assert offline.plan().header.plan_hash == online.header.plan_hash
    assert offline.plan().header.prompt_source["provenance"] == online.header.prompt_source["provenance"]
    assert silent.served == []  # not one request, from either offline build


@pytest.mark.slow
def test_the_readme_command_runs_the_built_in_arms_on_ultrachat(
    hub: Hub, silent: HubStandIn, cached: Path, tmp_path: Path
) -> None:
    # README's `joulebench run --prompts ultrachat`, offline from the cache, its run cut short (the
    # built-in plan is a minute); the plan in its run folder is the whole plan it made.
    flags = ["--time-limit", "1", "--idle", "0.2", "--warmup", "0", "--no-progress", "--out", str(tmp_path)]
    result = subprocess.run(
        joulebench_argv("run", "--prompts", "ultrachat", "--offline", *flags),
        cwd=REPO, env=_hf_env(cached, silent.url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (folder,) = [p for p in tmp_path.iterdir() if not p.is_symlink()]
    plan = load_plan(folder / "plan.parquet")
    built_in = PlanSpec.parse(DEFAULT_PLAN)
    assert built_in.n == TRAIN_ROWS
    assert [arm.spec for arm in plan.header.arms] == built_in.schedules
    assert plan.header.target_mean_rate == built_in.rate and plan.header.n == built_in.n * 3
    assert set(plan.rows["max_tokens"]) == {built_in.max_tokens}
    assert plan.header.prompt_source["spec"] == "ultrachat"
    assert set(plan.rows["prompt"]) <= set(hub.train_prompts)
    assert silent.served == []


@pytest.mark.slow
def test_offline_then_online_in_one_process(hub: Hub, silent: HubStandIn, cached: Path) -> None:
    # `datasets` reads HF_HOME and HF_ENDPOINT when imported: a process of its own. An offline load (a
    # slice of the cached split) must leave the next load online (a dataset not cached).
    script = (
        "import json, sys\n"
        "from traffic.prompts.hf import read_hf\n"
        f"cached = read_hf({ULTRACHAT!r}, 'train_sft[:5]', None, offline=True)\n"
        "fresh = read_hf('joulebench/eval_only', 'validation', None)\n"
        "print(json.dumps([cached.rows, cached.provenance['split'], cached.column('prompt'), fresh.rows]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO, env=_hf_env(cached, hub.standin.url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows, split, prompts, fresh_rows = json.loads(result.stdout)
    assert (rows, split, fresh_rows) == (5, "train_sft[:5]", 5)
    assert prompts == hub.train_prompts[:5]


@pytest.mark.slow
def test_offline_without_the_dataset_cached_fails_at_once(
    silent: HubStandIn, builds: dict[str, Build]
) -> None:
    build = builds["offline_uncached"]
    message = build.error()
    assert message == (
        f"hf:{ULTRACHAT}: cannot load it from the local Hugging Face cache ({build.home / 'datasets'}), "
        f"offline (--offline): Couldn't reach '{ULTRACHAT}' on the Hub (OfflineModeIsEnabled); if it is not "
        "cached, cache it by running once without --offline, with network"
    )  # the library's own first line: why it could not load
    assert silent.served == []


@pytest.mark.slow
def test_a_split_the_dataset_lacks_is_refused_with_its_splits(builds: dict[str, Build]) -> None:
    assert (
        builds["unknown_split"].error() == f"hf:{ULTRACHAT}: no split 'train' (splits: train_sft, test_sft)"
    )


@pytest.mark.slow
def test_without_a_split_an_sft_set_gives_train_sft(hub: Hub, builds: dict[str, Build]) -> None:
    build = builds["no_split"]
    assert build.result.returncode == 0, build.result.stderr
    source = build.plan().header.prompt_source
    assert source["split"] is None  # as given
    assert source["provenance"]["split"] == "train_sft"  # as loaded
    assert set(build.plan().rows["prompt"]) <= set(hub.train_prompts)


@pytest.mark.slow
def test_without_a_split_and_no_obvious_one_the_splits_are_listed(builds: dict[str, Build]) -> None:
    assert builds["no_obvious_split"].error() == (
        "hf:joulebench/eval_only: which split? (splits: validation, test); "
        "choose one: hf:joulebench/eval_only,split=S"
    )


def test_without_the_datasets_package_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # what `import datasets` meets without the extra
    out = tmp_path / "plan.parquet"
    status = run_main(["plan", "build", "--prompts", "ultrachat", "--n", "5", "--out", str(out)])
    message = one_line_error(capsys.readouterr().err, status)
    assert (
        message == f"hf:{ULTRACHAT}: the `datasets` package is not installed (pip install 'joulebench[hf]')"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("names", "given", "chosen"),
    [
        (["test", "train"], None, "train"),
        (["test"], None, "test"),
        (["test_sft", "train_gen", "train_sft"], None, "train_sft"),
        (["train", "test"], "test", "test"),
        (["train_sft", "test_sft"], "train_sft[:5]", "train_sft[:5]"),  # a slice goes to the load
        (["train"], "train[10%:20%]", "train[10%:20%]"),
    ],
)
def test_split_rule(names: list[str], given: str | None, chosen: str) -> None:
    assert choose_split("hf:x/y", names, given) == chosen


def test_a_slice_of_a_split_the_dataset_lacks_names_the_split() -> None:
    with pytest.raises(InputError, match=r"^hf:x/y: no split 'train' \(splits: train_sft\)$"):
        choose_split("hf:x/y", ["train_sft"], "train[:5]")


def test_offline_applies_to_hf_sources_only() -> None:
    with pytest.raises(InputError, match=r"^offline: applies to Hugging Face sources"):
        PlanSpec.parse({"prompts": "synthetic", "n": 5, "offline": True})
    assert PlanSpec.parse({"prompts": "ultrachat", "n": 5, "offline": True}).source.offline


def test_run_takes_offline_and_the_shortcut_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["run", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "--offline" in shown and "ultrachat" in shown
