"""`<out>/latest`: a relative link to the newest run, replaced in one step; a folder or file of that name
is left alone, with a note, and the run goes on; the temporary link has one name per process."""

from __future__ import annotations

import os

from harness.runfolder.latest import point_latest


def test_latest_is_replaced_and_relative(tmp_path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    assert point_latest(first) is None
    assert os.readlink(tmp_path / "latest") == "a"
    assert point_latest(second) is None
    assert os.readlink(tmp_path / "latest") == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "latest"]  # no temporary left


def test_a_folder_named_latest_is_left_alone(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "latest").mkdir()
    assert point_latest(run) == f"{tmp_path / 'latest'} is a folder, not a link: left as it is"
    assert (tmp_path / "latest").is_dir() and not (tmp_path / "latest").is_symlink()


def test_a_file_named_latest_is_left_alone(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "latest").write_text("someone's notes")
    assert point_latest(run) == f"{tmp_path / 'latest'} is a file, not a link: left as it is"
    assert (tmp_path / "latest").read_text() == "someone's notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run"]


def test_a_temporary_link_left_by_this_process_is_replaced(tmp_path) -> None:
    """As when a run of the same pid was killed between making the link and renaming it into place."""
    run = tmp_path / "run"
    run.mkdir()
    os.symlink("gone", tmp_path / f".latest.{os.getpid()}")
    assert point_latest(run) is None
    assert os.readlink(tmp_path / "latest") == "run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "run"]


def test_a_file_with_the_temporary_name_is_not_ours_to_remove(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / f".latest.{os.getpid()}").write_text("not a link")
    note = point_latest(run)
    assert note is not None and note.startswith(f"{tmp_path / 'latest'}: cannot point it at the run")
    assert (tmp_path / f".latest.{os.getpid()}").read_text() == "not a link"
    assert not (tmp_path / "latest").exists()
