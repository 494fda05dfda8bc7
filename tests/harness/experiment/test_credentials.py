"""No credential is written to an experiment folder: URL userinfo is redacted everywhere it is kept.

A URL target and a sidecar given with `user:token@` (the mock and the simulated sidecar ignore them);
the folder's files never hold the token, and a resume asks for the URL again instead of using the
redacted one.
"""

from __future__ import annotations

from pathlib import Path

from joulebench_testkit import one_line_error, run_main, run_mock_server, simulated_sidecar

SECRET = "tok3n-s3cret"


def _with_userinfo(url: str) -> str:
    return url.replace("http://", f"http://bench:{SECRET}@")


def test_userinfo_never_reaches_the_experiment_folder(tmp_path, capsys) -> None:
    with run_mock_server() as mock, simulated_sidecar(mock.url, "--interval", "0.05") as sidecar:
        exp = tmp_path / "exp.yaml"
        exp.write_text(
            f"target: '{_with_userinfo(mock.url)}'\n"
            f"power: {{sidecar: '{_with_userinfo(sidecar.url)}'}}\n"
            "plan: {prompts: synthetic, n: 2, max_tokens: 4, ignore_eos: true}\n"
            "arms: [fixed:interval=0.1]\nrepeats: 1\ncooldown_s: 0.3\ncell_reports: false\n"
        )
        out = tmp_path / "out"
        assert run_main(["experiment", "run", str(exp), "-o", str(out)]) == 0, capsys.readouterr().err
        (folder,) = out.iterdir()
        leaked = [p for p in folder.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert leaked == []
        assert "http://***@127.0.0.1" in (folder / "experiment.yaml").read_text()
        capsys.readouterr()
        status = run_main(["experiment", "resume", str(folder)])
        message = one_line_error(capsys.readouterr().err, status)
        assert message == (
            f"{folder / 'experiment.yaml'}: target.url: its credentials were not written down; give it "
            "again (--target URL or --set target.url=URL)"
        )
        assert run_main(["experiment", "resume", str(folder), "--target", _with_userinfo(mock.url),
                         "--set", f"power.sidecar={_with_userinfo(sidecar.url)}"]) == 0  # fmt: skip
        assert not any(SECRET.encode() in p.read_bytes() for p in Path(folder).rglob("*") if p.is_file())
