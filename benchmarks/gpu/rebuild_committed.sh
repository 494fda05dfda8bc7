#!/usr/bin/env bash
# Rebuild every committed result under docs/results with the current analysis code, in the order the
# files depend on each other, with the repository's own commands. Run it after the analysis changes on
# purpose (a new key in summary.json, a figure computed differently); tests/e2e/test_committed_*.py
# then check the committed files against what the code rebuilds.
#
#   1. every run folder that kept its raw data (requests.parquet): `joulebench report RUN`, which takes
#      the method, lateness bound, SLOs and power lag the run recorded in its manifest.json. Its raw
#      inputs are left as they are. A folder committed without report.html (an experiment's cells,
#      where the page would add ~300 kB each) is left without one.
#   2. every experiment folder: `joulebench experiment report EXP --refigure` where its run folders are
#      kept (the cells table is read again from them), else from cells.parquet alone (shaping-h200/mock).
#   3. the pages the scripts write: arrival-shaping-h100 (analyze.py, whose arms.csv the H200 page
#      reads), arrival-shaping-h200 (experiment_page.py), shaping-h200 (shaping_page.py).
#
# Folders without raw data (arrival-shaping-h100/mock-replay: summaries only) cannot be rebuilt and
# are left as committed. Usage: bash benchmarks/gpu/rebuild_committed.sh  (from anywhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
JOULEBENCH=${JOULEBENCH:-.venv/bin/joulebench}
PYTHON=${PYTHON:-.venv/bin/python}
R=docs/results

find "$R" -name requests.parquet -print0 | sort -z | while IFS= read -r -d '' requests; do
    run=$(dirname "$requests")
    [[ -f $run/report.html ]] && had_html=1 || had_html=0
    echo "report $run" >&2
    "$JOULEBENCH" report "$run" --quiet >/dev/null
    ((had_html)) || rm -f "$run/report.html"
done

find "$R" -name experiment.yaml -print0 | sort -z | while IFS= read -r -d '' spec; do
    experiment=$(dirname "$spec")
    refigure=()
    [[ -d $experiment/runs ]] && refigure=(--refigure)
    echo "experiment report $experiment ${refigure[*]}" >&2
    "$JOULEBENCH" experiment report "$experiment" "${refigure[@]}"
done

H100=$R/arrival-shaping-h100
"$PYTHON" benchmarks/gpu/analyze.py --runs "$H100/raw" --out "$H100" \
    --machine "$H100/machine.txt" --intro "$H100/intro.md" \
    --mock refit="$H100/mock-replay/refit" --mock default="$H100/mock-replay/default"
"$PYTHON" benchmarks/gpu/experiment_page.py "$R/arrival-shaping-h200" --h100 "$H100"
"$PYTHON" benchmarks/gpu/shaping_page.py "$R/shaping-h200"
