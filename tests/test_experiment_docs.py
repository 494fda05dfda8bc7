"""docs/experiments.md stays in step with the code it documents.

- Its "Fields" table, between `<!-- fields:start -->` and `<!-- fields:end -->`, is generated from
  `harness.experiment.definition.field_docs()` (every field of the experiment file, its default and
  its description). A new field, or a changed default or description, fails this test until the page
  is regenerated:

      .venv/bin/python tests/test_experiment_docs.py        # rewrites the table in docs/experiments.md

- Its table of the cells table's columns names exactly `CELL_COLUMNS`, in order.
- Its example experiment files are valid experiment files.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parent.parent / "docs" / "experiments.md"
START, END = "<!-- fields:start -->", "<!-- fields:end -->"


def fields_table() -> str:
    """The markdown table of every experiment field, as field_docs() describes it."""
    from harness.experiment.definition import field_docs

    lines = ["| field | default | description |", "|---|---|---|"]
    for name, default, text in field_docs():
        shown = default if default == "required" or "(" in default else f"`{default}`"
        lines.append(f"| `{name}` | {_cell(shown)} | {_cell(text)} |")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def documented_table(doc: str) -> str:
    if doc.count(START) != 1 or doc.count(END) != 1:
        raise AssertionError(f"{DOC.name}: expected one {START} ... {END} block")
    return doc.split(START, 1)[1].split(END, 1)[0].strip()


def write() -> None:
    doc = DOC.read_text(encoding="utf-8")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{fields_table()}\n{END}{tail}", encoding="utf-8")


def test_the_fields_table_is_generated_from_the_model() -> None:
    assert documented_table(DOC.read_text(encoding="utf-8")) == fields_table(), (
        "docs/experiments.md's Fields table is out of date: "
        "run `.venv/bin/python tests/test_experiment_docs.py`"
    )


def test_every_field_has_a_description() -> None:
    from harness.experiment.definition import field_docs

    assert [name for name, _, text in field_docs() if not text.strip()] == []


def test_the_cells_columns_are_documented_in_order() -> None:
    from harness.runfolder.experiment_files import CELL_COLUMNS

    section = DOC.read_text(encoding="utf-8").split("## The tidy table", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M)
    assert documented == list(CELL_COLUMNS)


def test_the_example_files_are_valid_experiments() -> None:
    from harness.experiment.definition import parse_experiment

    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    examples = [yaml.safe_load(block) for block in blocks]
    examples = [e for e in examples if isinstance(e, dict) and "arms" in e]
    assert len(examples) >= 2
    kinds = set()
    for example in examples:
        spec = parse_experiment(example, DOC.name, check_plans=False)
        if spec.target.kind == "embedded":  # its plan builds here; a real server's prompts live there
            parse_experiment(example, DOC.name, check_plans=True)
        kinds.add(spec.target.kind)
    assert {"embedded", "url"} <= kinds


if __name__ == "__main__":
    sys.path.insert(0, str(DOC.parent.parent))
    write()
    print(f"wrote the fields table of {DOC}")
