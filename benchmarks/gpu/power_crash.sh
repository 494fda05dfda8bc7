#!/usr/bin/env bash
# Power survives a crash, on a real GPU (issue 18, item 4): the NVML sidecar, a GPU kept busy in
# bursts, `joulebench run` SIGKILLed mid-plan, then `joulebench recover` and `joulebench report`. The
# truth is NVML's energy counter read by a separate process (benchmarks/gpu/power_crash_check.py
# `poll`), not through the sidecar; `check` compares the rebuilt power with it.
#
# The load is the mock server (the requests) plus a bf16 matmul loop on the GPU (the power): what is
# proven is the power path (NVML -> sidecar -> power_samples.jsonl -> recover -> join), not an engine.
#
# Needs (carried, git-ignored): .gpu/slim, wheels of what the GPU image lacks (benchmarks/gpu/prepare.sh). Writes to $OUT:
#   crash.log, recover.txt, report.txt, check.json, the run folder (run/), the truth (truth.jsonl).
# Usage (repository root, on the GPU machine): OUT=dir bash benchmarks/gpu/power_crash.sh
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${WORK:-${TMPDIR:-/tmp}/jb-crash}
OUT=${OUT:?set OUT to the folder for the results}
SITE=$WORK/site
PIDS=$WORK/pids
mkdir -p "$SITE" "$PIDS" "$OUT"
exec > >(tee "$OUT/crash.log") 2>&1
export PYTHONPATH="$SITE:$REPO" PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*"; }
jb() { python3 -m harness "$@"; }

start() {  # NAME COMMAND... : in its own session, its PID recorded (stopped by PID, never by name)
  local name=$1; shift
  setsid nohup "$@" >"$WORK/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name"
}

stop_all() {
  local name pid
  for name in load truth mock sidecar; do
    [ -f "$PIDS/$name" ] || continue
    pid=$(cat "$PIDS/$name")
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$PIDS/$name"
  done
}
trap stop_all EXIT

if [ ! -f "$SITE/.complete" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .gpu/slim/*.whl \
    || { log "wheel install failed"; exit 2; }
  touch "$SITE/.complete"
fi
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"

start truth python3 "$REPO/benchmarks/gpu/power_crash_check.py" poll --out "$OUT/truth.jsonl"
start sidecar python3 -m harness sidecar --backend nvml --port 9400 --interval 0.1
start mock python3 -m harness mock-server --port 8000 --seed 1
start load python3 "$REPO/benchmarks/gpu/power_crash_check.py" load --seconds 120
for url in http://127.0.0.1:9400/metrics http://127.0.0.1:8000/health; do
  for _ in $(seq 60); do curl -sf -m 2 "$url" >/dev/null && break; sleep 0.5; done
done

rm -rf "$WORK/runs"
python3 -m harness run --target http://127.0.0.1:8000 --sidecar http://127.0.0.1:9400 \
  --schedule poisson:rate=4 --n 200 --max-tokens 64 --idle 3 --no-progress --out "$WORK/runs" \
  >"$OUT/run.txt" 2>&1 &
RUN=$!
for _ in $(seq 600); do  # until 80 requests went out, then SIGKILL: no chance to save anything
  log_file=$(ls "$WORK"/runs/*/requests.jsonl 2>/dev/null | head -1)
  [ -n "$log_file" ] && [ "$(grep -c '"k":"sent"' "$log_file")" -ge 80 ] && break
  sleep 0.1
done
kill -KILL "$RUN"; wait "$RUN" 2>/dev/null
RUN_DIR=$(dirname "$log_file")
log "killed the run at $(grep -c '"k":"sent"' "$log_file") sends; left: $(ls "$RUN_DIR" | tr '\n' ' ')"
sleep 2  # the truth poller's last readings after the kill

jb recover "$RUN_DIR" | tee "$OUT/recover.txt"
COLUMNS=200 jb report "$RUN_DIR" | tee "$OUT/report.txt"
curl -s http://127.0.0.1:9400/metrics | grep -E '^joulebench_gpu_read_errors_total' >"$OUT/read_errors.txt"
stop_all
python3 "$REPO/benchmarks/gpu/power_crash_check.py" check --run "$RUN_DIR" --truth "$OUT/truth.jsonl" \
  --out "$OUT/check.json"
cp -r "$RUN_DIR" "$OUT/run"
