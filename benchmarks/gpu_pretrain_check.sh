#!/usr/bin/env bash
# Issue 10's GPU figures in one go: CanViT-B training glimpses/s, peak memory and host syncs per step,
# eager and compiled (bf16 autocast, fused AdamW), then a whole smoke run on CUDA (bf16 + compile,
# checkpoints, final/ export). About 5 min on one H100 (most of it compilation).
#
#   bash benchmarks/gpu_pretrain_check.sh                          # a lent device machine: its python3 has torch
#   PY="uv run --package canvit-train python" bash benchmarks/gpu_pretrain_check.sh   # a workstation with uv
#
# Writes $OUT/pretrain-gpu.jsonl (one JSON line per benchmark, as `canvit-train benchmark --json` prints it)
# and $OUT/pretrain-gpu.log; OUT defaults to benchmarks/results. BATCH (64) and STEPS (20) override.
# T = 4 glimpses per rollout (--chunks 2: the mean of the training lengths, K / p_stop), so eager vs
# compiled compare like for like; the paper's anchor is ~1,700 glimpses/s at batch 64 eager, 18.4 GB.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONPATH="$(ls -d "$PWD"/packages/*/src | paste -sd:)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
JSONL="$OUT/pretrain-gpu.jsonl" LOG="$OUT/pretrain-gpu.log"
status=0

bench() {
  echo "+ canvit-train benchmark $*" | tee -a "$LOG"
  if ! timeout "${T:-300}" $PY -m canvit_train.cli benchmark --json "$@" > "$OUT/.bench.out" 2>> "$LOG"; then
    echo "FAILED: benchmark $*" | tee -a "$LOG"; status=1; return
  fi
  cat "$OUT/.bench.out" | tee -a "$LOG" | grep -v '^{'
  grep '^{' "$OUT/.bench.out" >> "$JSONL"
}

{ date -u +"%F %T UTC"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1;
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } | tee -a "$LOG"
bench --preset canvit-b --batch-size "${BATCH:-64}" --steps "${STEPS:-20}" --warmup 3 --chunks 2
bench --preset canvit-b --batch-size "${BATCH:-64}" --steps "${STEPS:-20}" --warmup 3 --chunks 2 --compile

echo "+ pretrain --preset smoke --device cuda --compile" | tee -a "$LOG"
rm -rf /tmp/canvit-smoke-gpu
if timeout "${T:-300}" $PY -m canvit_train.pretrain.cli --preset smoke --device cuda --compile --no-progress \
     --no-results --run-dir /tmp/canvit-smoke-gpu >> "$LOG" 2>&1 && [ -f /tmp/canvit-smoke-gpu/final/model.safetensors ]; then
  tail -n 2 "$LOG"
else
  echo "FAILED: smoke run on CUDA (see $LOG)" | tee -a "$LOG"; tail -n 20 "$LOG"; status=1
fi
rm -f "$OUT/.bench.out"
exit $status
