"""A glob over an --out folder matches the `latest` link too: the run it points at counts once."""

from __future__ import annotations

from pathlib import Path

from harness.runfolder.run_paths import distinct_run_paths


def test_the_latest_link_is_dropped_only_when_its_run_is_given(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    latest = tmp_path / "latest"
    latest.symlink_to("b")
    assert distinct_run_paths([a, b, latest]) == [a, b]
    assert distinct_run_paths([latest, a]) == [latest, a]  # its run is not given: the link stands for it
    other = tmp_path / "x"
    other.symlink_to("b")  # a link of another name is the user's own: kept (and then refused as a repeat)
    assert distinct_run_paths([b, other]) == [b, other]
