"""`joulebench report` refuses a run folder whose manifest has a schema version it does not read."""

from __future__ import annotations

import json

from joulebench_testkit import one_line_error, run_main
from run_synth import build_run


def test_report_refuses_manifest_schema_version_99(tmp_path, capsys):
    run = build_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (run / "manifest.json").write_text(json.dumps(manifest))
    status = run_main(["report", str(run)])
    message = one_line_error(capsys.readouterr().err, status)
    assert (
        message
        == f"{run / 'manifest.json'}: schema_version 99; this joulebench reads manifest schema version 1"
    )
    assert not (run / "summary.json").exists() and not (run / "report.html").exists()
