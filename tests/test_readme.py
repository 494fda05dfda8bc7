"""The README's promises that a test can hold it to: its first lines, CI, and the Deploy commands."""

from __future__ import annotations

import re

from joulebench_testkit import REPO

README = (REPO / "README.md").read_text()


def code_blocks(text: str) -> list[list[str]]:
    return [
        [line for line in block.splitlines() if line.strip()]
        for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    ]


def test_first_lines_are_the_main_job_and_the_test_command():
    first = code_blocks(README)[0]
    assert len(first) == 2
    # The main job is the embedded default, run by tests/e2e/test_run_embedded.py.
    assert first[0].endswith("joulebench run")
    assert first[1] == "./scripts/test.sh"
    assert README.index("```bash") < 20  # the very first thing a reader sees


def test_ci_runs_the_readme_test_command():
    ci = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))
    ]
    assert ci == [code_blocks(README)[0][1]]


def test_deploy_commands_are_the_tested_ones_of_docs_deploy():
    # test_deploy_docs.py runs docs/deploy.md's commands where they can run here; the README quotes them.
    section = README.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    deploy = (REPO / "docs" / "deploy.md").read_text()
    commands = [line for block in code_blocks(section) for line in block]
    assert len(commands) >= 5
    for command in commands:
        assert command in deploy, f"README's Deploy command is not in docs/deploy.md: {command}"


def test_the_first_screen_shows_real_prompts_by_name_and_the_ci_kit():
    first_screen = "\n".join(README.splitlines()[:40])
    assert "joulebench run --prompts ultrachat" in first_screen
    assert "joulebench check RUN --baseline RUN" in first_screen and "docs/ci.md" in first_screen
