"""docs/shaping.md stays in step with the policies it documents.

- Its policy reference, between `<!-- policies:start -->` and `<!-- policies:end -->`, is generated from
  `traffic.shaping.param_docs()` (every policy, its summary, its parameters with default and
  description). A new policy or parameter, or a changed default or description, fails this test until
  the page is regenerated:

      .venv/bin/python tests/traffic/shaping/test_shaping_docs.py   # rewrites the block in docs/shaping.md

- Every policy spec the page shows in backticks parses.
- Its example of a user-written policy loads through the custom hook and does what the page says.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "shaping.md"
START, END = "<!-- policies:start -->", "<!-- policies:end -->"


def policies_block() -> str:
    """The reference of every policy, as param_docs() describes it."""
    from traffic.shaping import param_docs

    parts = []
    for kind, summary, rows in param_docs():
        parts += [f"### `{kind}`", "", f"{summary[0].upper()}{summary[1:]}.", ""]
        if rows:
            parts += ["| parameter | default | description |", "|---|---|---|"]
            parts += [f"| `{name}` | {_cell(default)} | {_cell(text)} |" for name, default, text in rows]
        else:
            parts.append("No parameters.")
        parts.append("")
    return "\n".join(parts).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def documented_block(doc: str) -> str:
    if doc.count(START) != 1 or doc.count(END) != 1:
        raise AssertionError(f"{DOC.name}: expected one {START} ... {END} block")
    return doc.split(START, 1)[1].split(END, 1)[0].strip()


def write() -> None:
    doc = DOC.read_text(encoding="utf-8")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{policies_block()}\n{END}{tail}", encoding="utf-8")


def test_the_policy_reference_is_generated_from_the_models():
    assert documented_block(DOC.read_text(encoding="utf-8")) == policies_block(), (
        "docs/shaping.md's policy reference is out of date: "
        "run `.venv/bin/python tests/traffic/shaping/test_shaping_docs.py`"
    )


def test_every_spec_the_page_shows_parses():
    from traffic.shaping import POLICIES, parse_policy

    kinds = "|".join(re.escape(kind) for kind in POLICIES if kind != "custom")
    specs = re.findall(rf"`((?:{kinds}):[^`\s]+|passthrough)`", DOC.read_text(encoding="utf-8"))
    assert len({spec.split(":")[0] for spec in specs}) == len(POLICIES) - 1
    for spec in specs:
        parse_policy(spec)


def test_the_canonical_names_the_page_shows_are_the_policies_own():
    from traffic.shaping import parse_policy

    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.M)
    assert len(rows) >= 8
    for spec, name in rows:
        if not spec.startswith("custom:"):  # the example class is loaded in the test below
            assert parse_policy(spec).name == name, spec


def test_the_example_policy_loads_through_the_custom_hook(tmp_path, monkeypatch):
    from traffic.shaping import SimServer, parse_policy, simulate

    (code,) = re.findall(r"```python\n(# my_policies\.py.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    (tmp_path / "my_policies.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = parse_policy("custom:class=my_policies:HoldFor,seconds=0.5")
        assert spec.name == "custom-HoldFor-seconds0.5"  # as the table of specs says
        outcomes = simulate(spec.create(np.random.default_rng(0)), [0, 10**8, 10**9], SimServer(0.05))
        assert [o.hold_ns for o in outcomes] == [5 * 10**8] * 3
        with pytest.raises(ValueError, match="seconds must be a number > 0"):
            parse_policy("custom:class=my_policies:HoldFor,seconds=-1")
    finally:
        sys.modules.pop("my_policies", None)


if __name__ == "__main__":
    sys.path.insert(0, str(DOC.parent.parent))
    write()
    print(f"wrote the policy reference of {DOC}")
