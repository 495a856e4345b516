#!/usr/bin/env bash
# One device call, under 8 minutes on one H200: forward latency/throughput of the five paper models (fp32, bf16,
# bf16 + channels-last, torch.compile within a 150 s budget), VCN training images/s (separate and joint, fp32 vs
# bf16), `blindbench eval` images/s on photos-demo, and GPU-vs-CPU metric equality. Tables go to $OUT:
# machine.txt, forward.md, train.md, metrics.md, eval.md, log.txt.
#
# The device has no internet. Prepare here, once (both outputs git-ignored):
#   python benchmarks/gpu_pack.py      # .gl/gpu (photos-demo shards, train crops) and .whl (webdataset wheels)
# Run there:
#   run(command="bash benchmarks/gpu.sh", carry=[".gl", ".whl"], timeout_s=540)
# Check here on CPU (tiny preset, 32², no compile; what tests/test_gpu_script.py runs, slow-marked):
#   bash benchmarks/gpu.sh --dry-run
# Targets (issue 16): VCN under 5 ms at batch 1, over 2,000 img/s at batch 64, bf16 training >= 2x fp32.
set -euo pipefail
source "$(dirname "$0")/gpu_prologue.sh" "$@"  # cd to the repo root; DRY, PY, OUT, BLINDBENCH_DATA
start=$(date +%s)
if [[ $DRY == 1 ]]; then
  BENCH=(--dry-run); EVAL=(--preset tiny --device cpu --limit 8 --batch 4)
else
  BENCH=(); EVAL=(--preset paper --device cuda --limit 48 --batch 16)
fi
write_machine_txt
$PY benchmarks/gpu_bench.py "${BENCH[@]}" 2>&1 | tee "$OUT/log.txt"
unpack_gpu_pack  # eval reads photos-demo's shards
$PY benchmarks/eval.py "${EVAL[@]}" 2>&1 | tee "$OUT/eval.md"
echo "gpu.sh done in $(( $(date +%s) - start )) s; tables in $OUT" | tee -a "$OUT/log.txt"
