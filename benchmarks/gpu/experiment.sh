#!/usr/bin/env bash
# GPU-machine side of the arrival-shaping experiment (issue 8): vLLM (or transformers, ENGINE=transformers)
# on the GPU, the NVML sidecar, a real Prometheus scraping both (when its .deb was stashed), and
# `joulebench run` with six arms over the same UltraChat prompts, repeated. CPU-machine side:
# benchmarks/gpu/prepare.sh; analysis: benchmarks/gpu/analyze.py.
#
# Each step is one subcommand, so that steps fit the GPU machine's per-command time limit and the
# long-lived processes (vLLM, sidecar, Prometheus) outlive a command (they run in their own
# sessions until `stop` or until the machine goes back):
#
#   experiment.sh stash DIR...   copy the contents of carried folders (chunks, wheels, .deb, data) into
#                                $WORK/stash (must be the last step of its command)
#   experiment.sh setup          unpack vLLM (ENGINE=vllm) + wheels, unpack Prometheus, build the model
#   experiment.sh start          start the sidecar (NVML), the engine (`joulebench serve vllm|transformers`),
#                                Prometheus
#   experiment.sh fixtures       record vLLM's SSE streams for the backend test suite
#   experiment.sh calibrate      measure the mock server's calibration curves (decode waves, prefill, idle)
#   experiment.sh plan           build the six-arm plan
#   experiment.sh repeat N       one `joulebench run` of the whole plan (repeat number N)
#   experiment.sh isolated       one request at a time with idle between (ISO_N requests, one every
#                                ISO_GAP s), for benchmarks/gpu/isolated_check.py; run folder in isolated/
#   experiment.sh transports     the same fixed-rate plan with `--transport aiohttp` and `sender`, alternating
#                                (TRANSPORT_REPEATS pairs, TRANSPORT_N requests at TRANSPORT_RATE per second,
#                                the same prompts each time), for benchmarks/gpu/transports_page.py; in transports/
#   experiment.sh experiment     start `joulebench experiment run` of $EXPERIMENT in the background
#                                (it outlives the command; `wait` follows it)
#   experiment.sh wait SECONDS   follow the experiment until it ends or SECONDS pass, then collect into
#                                $OUT when it is set (the machine can be taken back between commands:
#                                whatever has finished comes back with the command that waited for it)
#   experiment.sh collect        pack what is worth keeping into $OUT
#   experiment.sh stop           stop vLLM, the sidecar and Prometheus (by the PIDs `start` recorded)
#
# Several subcommands may be given at once: `experiment.sh setup start fixtures calibrate collect`.
# Environment (defaults in brackets): WORK [$TMPDIR/jb or /tmp/jb], PORT [8000], SIDECAR_PORT [9400],
# PROM_PORT [9090], ISO_N [20], ISO_GAP [2 s; 6 s with transformers, whose 128-token requests took 2.2–6.3 s on the H200: too
# short a gap for some], N [200 requests per arm], IDLE [20 s], MAX_TOKENS [128], SEED [1],
# TRANSPORT_RATE [100], TRANSPORT_N [500], TRANSPORT_REPEATS [3],
# EXPERIMENT [benchmarks/gpu/arrival-shaping-h200.yaml; benchmarks/gpu/shaping-h200.yaml: issue 15's policies],
# ENGINE [vllm; transformers: `transformers serve` from the GPU image, with .gpu/jbtf (benchmarks/gpu/prepare.sh) stashed].
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${WORK:-${TMPDIR:-/tmp}/jb}
STASH=$WORK/stash
SITE=$WORK/site
PROM=$WORK/prometheus
MODEL=$WORK/model
RESULTS=$WORK/results
PIDS=$WORK/pids
PORT=${PORT:-8000}
SIDECAR_PORT=${SIDECAR_PORT:-9400}
PROM_PORT=${PROM_PORT:-9090}
N=${N:-200}
IDLE=${IDLE:-20}
MAX_TOKENS=${MAX_TOKENS:-128}
SEED=${SEED:-1}
EXPERIMENT=${EXPERIMENT:-$HERE/arrival-shaping-h200.yaml}
ENGINE=${ENGINE:-vllm}
SERVED_NAME=llama-3.2-1b-random
# Prefix caching off: the arms replay the same prompts, and cached prefixes would make later arms
# cheaper (3.23 vs 3.57 J/request measured in the recipe).
VLLM_FLAGS=(--served-model-name "$SERVED_NAME" --dtype bfloat16 --max-model-len 4096 --no-enable-prefix-caching)
# transformers serves only the model it preloaded, under its path as the name. Its /v1/models scans the
# Hugging Face cache folder and answers 500 where none exists (as on the GPU machine): an empty one.
TRANSFORMERS_FLAGS=(--dtype bfloat16 --env "HF_HUB_CACHE=$WORK/hf-cache")

mkdir -p "$STASH" "$RESULTS" "$PIDS"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"
log() { echo "[$(date +%T)] $*"; }
jb() { python3 -m harness "$@"; }

wait_http() {  # URL SECONDS [PID: give up once it has exited]
  python3 - "$1" "$2" "${3:-}" <<'EOF'
import sys, time, urllib.request
url, limit, pid = sys.argv[1], float(sys.argv[2]), sys.argv[3]
end = time.monotonic() + limit
while time.monotonic() < end:
    if pid:  # exited (or a zombie this script has not reaped yet): no point waiting
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                sys.exit(1)
        except FileNotFoundError:
            sys.exit(1)
    try:
        if urllib.request.urlopen(url, timeout=2).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(1)
sys.exit(1)
EOF
}

do_stash() {
  for d in "$@"; do cp -r "$d"/. "$STASH"/ && log "stashed $d"; done
  find "$STASH" -name '*.json.gz' -exec gunzip -f {} +  # prepare.sh gzips the tokenizer to travel
  ls -la "$STASH"
}

do_setup() {
  if [ ! -f "$SITE/.complete" ] && [ "$ENGINE" != vllm ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$STASH"/*.whl \
      || { log "wheel install failed"; exit 2; }
    touch "$SITE/.complete"
  fi
  if [ ! -f "$SITE/.complete" ]; then
    local want; want=$(cat "$STASH"/SHA256)
    local got; got=$(cat "$STASH"/site.tar.xz.part-* | sha256sum | cut -d' ' -f1)
    [ "$want" = "$got" ] || { log "chunk checksum mismatch (a chunk is missing): send them again"; exit 2; }
    rm -rf "$SITE" && mkdir -p "$SITE"
    cat "$STASH"/site.tar.xz.part-* | xz -d -T0 | tar -x -C "$SITE" || { log "unpack failed"; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$SITE" "$STASH"/*.whl \
      || { log "wheel install failed"; exit 2; }
    touch "$SITE/.complete"
    log "vLLM site ready ($(du -sh "$SITE" | cut -f1))"
  fi
  if [ ! -x "$PROM/usr/bin/prometheus" ] && compgen -G "$STASH/prometheus_*.deb" >/dev/null; then
    mkdir -p "$PROM" && dpkg -x "$STASH"/prometheus_*.deb "$PROM" && log "prometheus unpacked"
  fi
  if [ ! -f "$MODEL/config.json" ]; then
    python3 "$HERE/recipe/build_model.py" --out "$MODEL" \
      --config "$STASH/models/Llama-3.2-1B-Instruct/config.json" \
      --tokenizer-dir "$STASH/models/Llama-3-tokenizer" 2>&1 | grep -v Warning | tail -3
    [ -f "$MODEL/config.json" ] || { log "model build failed"; exit 3; }
  fi
  {
    nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv
    lscpu | grep -E 'Model name|^CPU\(s\)'
    python3 -c "import $ENGINE, torch, pandas, httpx, aiohttp, typer, pynvml; print('$ENGINE', $ENGINE.__version__, 'torch', torch.__version__, 'pandas', pandas.__version__, 'httpx', httpx.__version__, 'aiohttp', aiohttp.__version__, 'typer', typer.__version__)"
    jb --version
  } 2>&1 | tee "$RESULTS/machine.txt"
}

do_start() {
  # Own sessions (setsid), so they outlive this command; logs in $RESULTS.
  # A background job of this script is not a group leader, so setsid execs in place: $! is the PID.
  setsid nohup python3 -m harness sidecar --backend nvml --port "$SIDECAR_PORT" --interval 0.1 \
    --log "$RESULTS/sidecar_samples.jsonl" >"$RESULTS/sidecar.log" 2>&1 < /dev/null &
  echo $! >"$PIDS/sidecar"
  if [ "$ENGINE" = transformers ]; then
    mkdir -p "$WORK/hf-cache"
    setsid nohup python3 -m harness serve transformers --model "$MODEL" --port "$PORT" --health-timeout 300 \
      --out "$RESULTS/transformers" "${TRANSFORMERS_FLAGS[@]}" >"$RESULTS/serve.log" 2>&1 < /dev/null &
  else
    setsid nohup python3 -m harness serve vllm --model "$MODEL" --port "$PORT" --python python3 \
      --env VLLM_USE_FLASHINFER_SAMPLER=0 --out "$RESULTS/vllm" "${VLLM_FLAGS[@]}" \
      >"$RESULTS/serve.log" 2>&1 < /dev/null &
  fi
  echo $! >"$PIDS/serve"
  if [ -x "$PROM/usr/bin/prometheus" ]; then
    sed -e "s/sidecar:9400/127.0.0.1:$SIDECAR_PORT/" -e "s/server:8000/127.0.0.1:$PORT/" \
      "$REPO/deploy/prometheus/prometheus.yml" >"$WORK/prometheus.yml"
    setsid nohup "$PROM/usr/bin/prometheus" --config.file="$WORK/prometheus.yml" \
      --storage.tsdb.path="$WORK/prometheus-data" --web.listen-address="127.0.0.1:$PROM_PORT" \
      >"$RESULTS/prometheus.log" 2>&1 < /dev/null &
    echo $! >"$PIDS/prometheus"
  fi
  wait_http "http://127.0.0.1:$SIDECAR_PORT/metrics" 30 || { log "sidecar did not start"; cat "$RESULTS/sidecar.log"; exit 4; }
  if [ -f "$PIDS/prometheus" ]; then
    wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 60 || { log "prometheus did not start"; tail "$RESULTS/prometheus.log"; exit 4; }
  fi
  local t0=$SECONDS
  wait_http "http://127.0.0.1:$PORT/health" 500 "$(cat "$PIDS/serve")" || { log "$ENGINE did not become healthy"; tail -40 "$RESULTS/serve.log"; tail -40 "$RESULTS/$ENGINE/server.log"; exit 4; }
  # `joulebench serve` records the version just after its own health check: wait for that record.
  for _ in $(seq 60); do
    grep -q healthy_after_s "$RESULTS/$ENGINE/server.json" 2>/dev/null && break
    sleep 0.5
  done
  log "sidecar, prometheus ($([ -f "$PIDS/prometheus" ] && echo on || echo off)) and $ENGINE up ($ENGINE healthy after $((SECONDS - t0)) s more)"
}

do_fixtures() {
  local version model=()
  version=$(python3 -c "import json; print(json.load(open('$RESULTS/$ENGINE/server.json'))['version'])")
  [ "$ENGINE" = transformers ] && model=(--model "$MODEL")
  python3 "$REPO/benchmarks/gpu/record_fixtures.py" --base-url "http://127.0.0.1:$PORT" --server "$ENGINE" \
    "${model[@]}" --out "$RESULTS/fixtures/$ENGINE-$version" 2>&1 | tail -6
}

do_calibrate() {
  python3 "$HERE/recipe/calibrate.py" --base-url "http://127.0.0.1:$PORT" --model "$SERVED_NAME" \
    --tokenizer "$MODEL/tokenizer.json" --prompts "$STASH/prompts/ultrachat/ultrachat_prompts.jsonl" \
    --json "$RESULTS/calibration.json" 2>&1 | tail -20
}

do_plan() {
  # Six arms over the same prompts; uniform and bursty at the mean rate of fixed 50 ms (20 req/s).
  # transformers refuses ignore_eos (HTTP 422): its outputs end at max_tokens or a sampled end token.
  local eos=(--ignore-eos)
  [ "$ENGINE" = transformers ] && eos=()
  jb plan build --prompts "$STASH/prompts/ultrachat/ultrachat_prompts.jsonl" \
    --schedule concurrency:n=1,name=sequential \
    --schedule fixed:interval=0.5,name=fixed-500ms \
    --schedule fixed:interval=0.05,name=fixed-50ms \
    --schedule uniform:low=0.1,high=0.5,rate=20,name=uniform-20rps \
    --schedule bursty:size=8,intra=0.01,gap=0.33,rate=20,name=bursty-20rps \
    --schedule "bursty:size=$N,intra=0,gap=1,name=one-burst" \
    --n "$N" --seed "$SEED" --max-tokens "$MAX_TOKENS" "${eos[@]}" \
    --tokenizer "$MODEL/tokenizer.json" --out "$RESULTS/arms.parquet" || exit 5
  jb plan describe "$RESULTS/arms.parquet"
}

do_repeat() {  # N
  local prom=() model=()
  [ -f "$PIDS/prometheus" ] && prom=(--prometheus "http://127.0.0.1:$PROM_PORT")
  [ "$ENGINE" = transformers ] && model=(--model "$MODEL")
  jb run --target "http://127.0.0.1:$PORT" "${model[@]}" --sidecar "http://127.0.0.1:$SIDECAR_PORT" \
    "${prom[@]}" --plan "$RESULTS/arms.parquet" --idle "$IDLE" \
    --server-info "$RESULTS/$ENGINE/server.json" --no-progress --out "$RESULTS/runs" 2>&1 | tail -60
  log "repeat $1 done"
}

do_isolated() {
  local model=() eos=(--ignore-eos) gap=${ISO_GAP:-2}
  if [ "$ENGINE" = transformers ]; then model=(--model "$MODEL"); eos=(); gap=${ISO_GAP:-6}; fi
  jb run --target "http://127.0.0.1:$PORT" "${model[@]}" --sidecar "http://127.0.0.1:$SIDECAR_PORT" \
    --prompts "$STASH/prompts/ultrachat/ultrachat_prompts.jsonl" --tokenizer "$MODEL/tokenizer.json" \
    --schedule "fixed:interval=$gap,name=isolated" --n "${ISO_N:-20}" --max-tokens "$MAX_TOKENS" "${eos[@]}" \
    --seed "$SEED" --idle 10 --server-info "$RESULTS/$ENGINE/server.json" --no-progress \
    --out "$RESULTS/isolated" 2>&1 | tail -20
  # A failed run must not send the check to an older run's folder.
  ((PIPESTATUS[0] == 0)) || { log "isolated run failed"; return 1; }
  python3 "$HERE/isolated_check.py" "$(ls -d "$RESULTS"/isolated/*/ | tail -1)" --method time,steps
}

do_transports() {
  local rate=${TRANSPORT_RATE:-100} n=${TRANSPORT_N:-500} model=() eos=(--ignore-eos) order interval
  if [ "$ENGINE" = transformers ]; then model=(--model "$MODEL"); eos=(); fi
  [[ $rate =~ ^[0-9]+([.][0-9]+)?$ && ! $rate =~ ^0+([.]0+)?$ ]] || { log "TRANSPORT_RATE=$rate: expected a rate > 0 (requests/s)"; return 1; }
  # Repeats of an earlier call would enter the page's medians with these: a fresh folder each time.
  [ -z "$(ls -A "$RESULTS/transports" 2>/dev/null)" ] || { log "transports: $RESULTS/transports is not empty (move it away first)"; return 1; }
  interval=$(python3 -c "import sys; print(1 / float(sys.argv[1]))" "$rate")
  for r in $(seq "${TRANSPORT_REPEATS:-3}"); do
    order="aiohttp sender"; ((r % 2 == 0)) && order="sender aiohttp"  # neither always goes first
    for t in $order; do
      jb run --target "http://127.0.0.1:$PORT" "${model[@]}" --sidecar "http://127.0.0.1:$SIDECAR_PORT" \
        --prompts "$STASH/prompts/ultrachat/ultrachat_prompts.jsonl" --tokenizer "$MODEL/tokenizer.json" \
        --schedule "fixed:interval=$interval,name=paced" --n "$n" --max-tokens "$MAX_TOKENS" "${eos[@]}" \
        --seed "$SEED" --idle 5 --transport "$t" --server-info "$RESULTS/$ENGINE/server.json" --no-progress \
        --out "$RESULTS/transports/$t" 2>&1 | tail -4
      ((PIPESTATUS[0] == 0)) || { log "transports: run $r ($t) failed"; return 1; }
    done
  done
  python3 "$HERE/transports_page.py" "$RESULTS/transports"
}

do_experiment() {
  local target=(--target "http://127.0.0.1:$PORT") prom=()
  # transformers answers only to the name of the model it preloaded: its path.
  [ "$ENGINE" = transformers ] && target=(--set "target={url: 'http://127.0.0.1:$PORT', model: '$MODEL'}")
  [ -f "$PIDS/prometheus" ] && prom=(--set "power.prometheus=http://127.0.0.1:$PROM_PORT")
  setsid nohup python3 -m harness experiment run "$EXPERIMENT" \
    "${target[@]}" --set "power.sidecar=http://127.0.0.1:$SIDECAR_PORT" \
    "${prom[@]}" --set "server_info=$RESULTS/$ENGINE/server.json" \
    --set "plan.prompts=$STASH/prompts/ultrachat/ultrachat_prompts.jsonl" \
    --set "plan.tokenizer=$MODEL/tokenizer.json" --out "$RESULTS/experiments" \
    >"$RESULTS/experiment.log" 2>&1 < /dev/null &
  echo $! >"$PIDS/experiment"
  log "experiment started (PID $(cat "$PIDS/experiment"))"
}

do_wait() {  # SECONDS
  local pid; pid=$(cat "$PIDS/experiment")
  local end=$((SECONDS + $1))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 5; done
  tail -5 "$RESULTS/experiment.log"
  kill -0 "$pid" 2>/dev/null && log "experiment still running" || log "experiment ended"
  [ -z "${OUT:-}" ] || do_collect
}

do_collect() {
  [ -n "${OUT:-}" ] || { log "OUT is not set"; return 0; }
  cp "$RESULTS"/machine.txt "$OUT"/ 2>/dev/null
  [ -f "$RESULTS/calibration.json" ] && cp "$RESULTS/calibration.json" "$OUT"/
  # Everything small goes into one archive (the machine returns at most 8 files).
  tar -C "$RESULTS" -czf "$OUT/results.tgz" --exclude='prometheus-data' --exclude='*.safetensors' \
    $(cd "$RESULTS" && ls -d runs experiments isolated transports experiment.log fixtures vllm transformers arms.parquet arms.parquet.json sidecar.log serve.log prometheus.log 2>/dev/null)
  ls -la "$OUT"
}

do_stop() {
  # By the PIDs `start` recorded, never by name: `serve` stops vLLM's whole process group on SIGINT.
  local name pid
  for name in experiment serve sidecar prometheus; do
    [ -f "$PIDS/$name" ] || continue
    pid=$(cat "$PIDS/$name")
    if [ "$name" = serve ]; then kill -INT "$pid" 2>/dev/null; else kill -TERM "$pid" 2>/dev/null; fi
  done
  for name in experiment serve sidecar prometheus; do
    [ -f "$PIDS/$name" ] || continue
    pid=$(cat "$PIDS/$name")
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && log "$name ($pid) still running" || { rm -f "$PIDS/$name"; log "$name stopped"; }
  done
}

[ $# -gt 0 ] || { sed -n '2,/^set -uo/p' "$0"; exit 1; }
while [ $# -gt 0 ]; do
  cmd=$1; shift
  case "$cmd" in
    stash) do_stash "$@"; break ;;
    setup|start|fixtures|calibrate|plan|isolated|transports|experiment|collect|stop) "do_$cmd" ;;
    wait) do_wait "${1:?wait needs seconds}"; shift ;;
    repeat) do_repeat "${1:?repeat needs a number}"; shift ;;
    *) log "unknown step $cmd"; exit 1 ;;
  esac
done
