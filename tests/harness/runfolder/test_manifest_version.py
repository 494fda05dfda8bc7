"""A run folder whose manifest.json has another schema version (or none) is refused when read."""

from __future__ import annotations

import json

import pytest

from foundation.errors import InputError
from harness.runfolder import RunFolder
from harness.runfolder.folder import MANIFEST_SCHEMA_VERSION
from traffic.builder import build_plan
from traffic.spec import PlanSpec


@pytest.fixture(scope="module")
def plan():
    return build_plan(PlanSpec.parse({"prompts": "synthetic", "n": 2}))


@pytest.mark.parametrize(
    ("version", "found"),
    [
        (99, "schema_version 99"),
        (0, "schema_version 0"),
        ("1", "schema_version '1'"),
        (True, "schema_version True"),
        (1.0, "schema_version 1.0"),
        (None, "no schema_version"),
    ],
)
def test_another_schema_version_is_refused(tmp_path, plan, version, found):
    folder = RunFolder.create(tmp_path, plan)
    manifest = folder.manifest()
    if version is None:
        del manifest["schema_version"]
    else:
        manifest["schema_version"] = version
    folder.write_manifest(manifest)
    path = folder.path / "manifest.json"
    expected = f"{path}: {found}; this joulebench reads manifest schema version {MANIFEST_SCHEMA_VERSION}"
    with pytest.raises(InputError) as caught:
        RunFolder.open(folder.path).manifest()
    assert str(caught.value) == expected


def test_the_supported_version_is_read(tmp_path, plan):
    folder = RunFolder.create(tmp_path, plan)
    assert (
        json.loads((folder.path / "manifest.json").read_text())["schema_version"] == MANIFEST_SCHEMA_VERSION
    )
    assert folder.manifest()["run_id"] == folder.run_id
