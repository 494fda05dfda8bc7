"""Names say what a room holds, once: no two modules (or a module and a package) share a name."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("foundation", "traffic", "harness", "joulebench")
# Python's own names: every package has them, they hold no project concept.
SPECIAL = {"__init__", "__main__"}


def test_every_module_and_package_name_is_unique() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "__pycache__" in path.parts or path.stem in SPECIAL:
                continue
            places[path.stem].append(str(path.relative_to(ROOT)))
        for path in sorted((ROOT / package).rglob("*")):
            if path.is_dir() and (path / "__init__.py").is_file():
                places[path.name].append(str(path.relative_to(ROOT)) + "/")
    clashes = {name: where for name, where in places.items() if len(where) > 1}
    assert not clashes, clashes
