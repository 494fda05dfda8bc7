#!/usr/bin/env bash
# Installs the peer load generators that benchmarks/peers/side_by_side.py compares joulebench with,
# each in a virtualenv of its own under $PEERS_HOME (default .peers/ at the repository root,
# git-ignored): none of them is, or becomes, a dependency of joulebench, and their pins cannot clash
# with each other's (aiperf and guidellm want different versions of the same libraries).
#
#   bash benchmarks/peers/setup.sh                 # all three
#   PEERS_HOME=/tmp/peers bash benchmarks/peers/setup.sh guidellm
#
# A tool that cannot be installed here is skipped, not fatal: the reason goes to the output and to
# $PEERS_HOME/<tool>.skipped, which side_by_side.py prints in its table.
set -uo pipefail

# Pinned: the newest release of each on PyPI when this script was written (December 2026).
GUIDELLM="guidellm==0.8.1"              # Requires-Python >=3.10
AIPERF="aiperf==0.13.0"                 # Requires-Python >=3.11,<3.14
INFERENCE_PERF="inference-perf==0.7.0"  # Requires-Python >=3.12 (every release so far)

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PEERS_HOME=${PEERS_HOME:-$ROOT/.peers}
PYTHON=${PEERS_PYTHON:-python3}
mkdir -p "$PEERS_HOME"

# The first interpreter at least MAJOR.MINOR, from $PEERS_PYTHON, then python3.13/3.12 on PATH, then
# pyenv's installs (a pyenv shim on PATH fails unless that version is selected, so each is run).
find_python() {
    local want=$1 candidate
    for candidate in "$PYTHON" python3.13 python3.12 "$HOME"/.pyenv/versions/3.1[2-3]*/bin/python3; do
        if "$candidate" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$want'.split('.'))))" \
            >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

skip() {  # tool, reason
    echo "SKIPPED $1: $2" | tee "$PEERS_HOME/$1.skipped" >&2
}

install() {  # tool, pip spec, minimum python, executable
    local tool=$1 spec=$2 want=$3 exe=$4 python
    rm -f "$PEERS_HOME/$tool.skipped"
    if ! python=$(find_python "$want"); then
        skip "$tool" "$spec requires Python >=$want; $PYTHON is $("$PYTHON" -V 2>&1) and no python$want+ \
was found (set PEERS_PYTHON to one)"
        return 0
    fi
    echo "== $tool: $spec with $("$python" -V) into $PEERS_HOME/$tool"
    if ! "$python" -m venv "$PEERS_HOME/$tool" \
        || ! "$PEERS_HOME/$tool/bin/pip" install -q "$spec" >"$PEERS_HOME/$tool.pip.log" 2>&1; then
        skip "$tool" "pip install $spec failed with $("$python" -V); last lines of $PEERS_HOME/$tool.pip.log: \
$(tail -n 3 "$PEERS_HOME/$tool.pip.log" 2>/dev/null | tr '\n' ' ')"
        return 0
    fi
    if ! "$PEERS_HOME/$tool/bin/$exe" --help >/dev/null 2>&1; then
        skip "$tool" "$spec installed but '$exe --help' fails"
        return 0
    fi
    echo "ok $tool: $("$PEERS_HOME/$tool/bin/pip" show "${spec%%==*}" | grep '^Version') ($PEERS_HOME/$tool/bin/$exe)"
}

tools=("$@")
[ ${#tools[@]} -eq 0 ] && tools=(guidellm aiperf inference-perf)
for tool in "${tools[@]}"; do
    case $tool in
        guidellm) install guidellm "$GUIDELLM" 3.10 guidellm ;;
        aiperf) install aiperf "$AIPERF" 3.11 aiperf ;;
        inference-perf) install inference-perf "$INFERENCE_PERF" 3.12 inference-perf ;;
        *) echo "unknown tool '$tool' (guidellm, aiperf, inference-perf)" >&2; exit 2 ;;
    esac
done
