#!/usr/bin/env bash
# Every GPU benchmark in one go, under 8 minutes on one H100/H200-class GPU; JSON in benchmarks/results/.
#
#   bash benchmarks/gpu.sh                 # on the GPU machine, from the repository root
#   bash benchmarks/gpu.sh --dry-run       # print the commands and the time budget, run nothing
#   bash benchmarks/gpu.sh --cpu-smoke     # the same commands, --quick on the CPU (checks the script)
#
# What runs (each step has its own time limit, so the whole stays under 8 minutes even if one hangs):
#   1. generator.py   256, batch 1 and 32: fp32, bf16, fp16 eager; channels-last + fp16/bf16 eager,
#                     with torch.compile, and with compile + CUDA graphs (reduce-overhead).
#                     Targets (JSON "targets"): < 3 ms/image at batch 1, > 2,000 images/s at batch 32.
#   2. pipeline.py    whole image (one face, six faces) and video frames (the per-frame, live path),
#                     fp32 against channels-last + bf16.
#   3. train_step.py  one G + D step with every loss, bf16, with the model FLOP utilisation
#                     (target: 35% or more).
# A step that fails or runs out of time is reported at the end; the others still run.
set -u
cd "$(dirname "$0")/.."

MODE=run
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --cpu-smoke) MODE=smoke ;;
  "") ;;
  *) echo "usage: bash benchmarks/gpu.sh [--dry-run | --cpu-smoke]" >&2; exit 2 ;;
esac

PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
# one compile cache for the whole run: the second batch size reuses what the first compiled
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$(mktemp -d /tmp/hififace-inductor-XXXXXX)}"

GEN_VARIANTS="fp32 bf16 fp16 channels_last+bf16 channels_last+fp16 channels_last+fp16+compile channels_last+bf16+compile channels_last+fp16+compile(cudagraphs) channels_last+bf16+compile(cudagraphs)"
# step name | time limit (s) | command
STEPS=(
  "generator|320|$PY benchmarks/generator.py --device cuda --configs 256x1 256x32 --repeats 20 --warmup 3 --variants $GEN_VARIANTS"
  "pipeline|70|$PY benchmarks/pipeline.py --device cuda --repeats 5"
  "train_step|70|$PY benchmarks/train_step.py --device cuda"
)
if [ "$MODE" = smoke ]; then  # the same scripts, tiny config, on the CPU (limits for a busy 2-core CPU)
  STEPS=(
    "generator|600|$PY benchmarks/generator.py --device cpu --quick --out-dir /tmp/hififace-gpu-smoke"
    "pipeline|600|$PY benchmarks/pipeline.py --device cpu --quick --out-dir /tmp/hififace-gpu-smoke"
    "train_step|600|$PY benchmarks/train_step.py --device cpu --quick --out-dir /tmp/hififace-gpu-smoke"
  )
fi

total=0
for step in "${STEPS[@]}"; do total=$((total + $(cut -d'|' -f2 <<<"$step"))); done
echo "gpu.sh: ${#STEPS[@]} steps, at most ${total} s in all (mode: $MODE)"
if [ "$MODE" = run ]; then
  $PY - <<'PY' || { echo "gpu.sh: no CUDA device; use --dry-run or --cpu-smoke" >&2; exit 1; }
import torch
assert torch.cuda.is_available()
print("gpu.sh:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PY
fi

failed=()
for step in "${STEPS[@]}"; do
  name=$(cut -d'|' -f1 <<<"$step"); limit=$(cut -d'|' -f2 <<<"$step"); command=$(cut -d'|' -f3- <<<"$step")
  echo "== $name (limit ${limit} s): $command"
  [ "$MODE" = dry ] && continue
  start=$SECONDS
  # word splitting of $command is wanted (variant names hold no spaces); the parentheses are quoted by set -f
  set -f
  timeout --signal=INT --kill-after=10 "$limit" $command || failed+=("$name (exit $?)")
  set +f
  echo "== $name: $((SECONDS - start)) s"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu.sh: failed or out of time: ${failed[*]}" >&2
  exit 1
fi
[ "$MODE" = dry ] || echo "gpu.sh: done; JSON in benchmarks/results/ (smoke: /tmp/hififace-gpu-smoke)"
