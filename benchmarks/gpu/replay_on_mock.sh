#!/usr/bin/env bash
# Replay the GPU experiment's plan against the mock server (no GPU), to see how far the mock's energy
# per request is from the GPU's and whether it ranks the arms the same way (issue 8).
# Usage (repository root, venv active):
#   bash benchmarks/gpu/replay_on_mock.sh PLAN PROFILE OUT [TOKENIZER]
# e.g. bash benchmarks/gpu/replay_on_mock.sh docs/results/arrival-shaping-h100/raw/<run>/plan.parquet \
#        h100-vllm0.26-llama3.2-1b-refit runs/mock-replay ../shared/data/models/Llama-3-tokenizer/tokenizer.json
# Real time (--speed 1), like the GPU run: the plan takes about 4 minutes.
set -euo pipefail
PLAN=${1:?plan} PROFILE=${2:?profile} OUT=${3:?out folder} TOKENIZER=${4:-}
MOCK_PORT=${MOCK_PORT:-18011} SIDECAR_PORT=${SIDECAR_PORT:-19411}
tok=()
[ -n "$TOKENIZER" ] && tok=(--tokenizer "$TOKENIZER")
joulebench mock-server --port "$MOCK_PORT" --profile "$PROFILE" --seed 1 "${tok[@]}" >/tmp/replay_mock.log 2>&1 &
mock=$!
joulebench sidecar --backend simulated --simulate-from "http://127.0.0.1:$MOCK_PORT" --port "$SIDECAR_PORT" \
  --interval 0.1 >/tmp/replay_sidecar.log 2>&1 &
car=$!
trap 'kill $mock $car 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$MOCK_PORT/health" >/dev/null && curl -sf "http://127.0.0.1:$SIDECAR_PORT/metrics" >/dev/null && break
  sleep 0.5
done
joulebench run --target "http://127.0.0.1:$MOCK_PORT" --sidecar "http://127.0.0.1:$SIDECAR_PORT" \
  --plan "$PLAN" --idle 10 --no-progress --out "$OUT"
