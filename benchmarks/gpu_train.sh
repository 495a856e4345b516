#!/usr/bin/env bash
# One device call, under 9 minutes on one H200: train the paper-preset VCN (bf16) on photos-train for a fixed
# wall-time budget (separate stage, then joint from its weights), evaluate it on photos-demo, and write the
# weights (fp16, ~7.6 MB), the training metrics and the eval CSV to $OUT.
#
# Prepare here, once:   python benchmarks/gpu_pack.py          (writes .gl/gpu and .whl, both git-ignored)
# Run there:            run(command="bash benchmarks/gpu_train.sh", carry=[".gl", ".whl"], timeout_s=600)
# Check here on CPU:    bash benchmarks/gpu_train.sh --dry-run  (tiny preset, seconds per stage, 8 eval images)
set -euo pipefail
source "$(dirname "$0")/gpu_prologue.sh" "$@"  # cd to the repo root; DRY, PY, OUT, BLINDBENCH_DATA
if [[ $DRY == 1 ]]; then
  MODEL=(--preset tiny --device cpu --crop-size 64 --batch-separate 4 --batch-joint 4 --workers 1 --critic-steps 1)
  SEP=0.15; JOINT=0.1; LIMIT=(--limit 8)
else
  # paper preset and schedule (batch 12 then 4, lr 1e-4 then 1e-5, 5 fresh critic updates); bf16 autocast
  MODEL=(--preset paper --device cuda --amp --batch-separate 12 --batch-joint 4 --workers 12)
  SEP=${GPU_SEPARATE_MINUTES:-5.0}; JOINT=${GPU_JOINT_MINUTES:-1.5}; LIMIT=()
fi
COMMON=(--model vcn --set benchmarks/gpu/photos-train-gpu.toml --source stream --no-perceptual --val-set ""
        --log-every 25 --sample-every 0 --checkpoint-every 1000 --no-tensorboard --no-progress "${MODEL[@]}")
start=$(date +%s)
unpack_gpu_pack
write_machine_txt
rm -rf "$BLINDBENCH_DATA/runs/gpu-separate" "$BLINDBENCH_DATA/runs/gpu-joint" "$BLINDBENCH_DATA/evals/gpu"
$PY -m blindbench train "${COMMON[@]}" --stage separate --steps-separate 1000000 --max-minutes "$SEP" \
  --out "$BLINDBENCH_DATA/runs/gpu-separate"
$PY -m blindbench train "${COMMON[@]}" --stage joint --steps-joint 1000000 --max-minutes "$JOINT" \
  --init "$BLINDBENCH_DATA/runs/gpu-separate" --out "$BLINDBENCH_DATA/runs/gpu-joint"
$PY -m blindbench eval --model vcn --checkpoint "$BLINDBENCH_DATA/runs/gpu-joint" --set photos-demo \
  --out "$BLINDBENCH_DATA/evals/gpu" --no-progress "${LIMIT[@]}"
$PY - "$BLINDBENCH_DATA" "$OUT" <<'PYEOF'
import json, shutil, sys
from pathlib import Path
from blindbench.checkpoint import load_checkpoint
from blindbench.zoo import export_weights
data, out = Path(sys.argv[1]), Path(sys.argv[2])
digest = export_weights(data / "runs/gpu-joint", out / "vcn-paper-gpu.pt")
for stage in ("separate", "joint"):
    shutil.copyfile(data / f"runs/gpu-{stage}/metrics.csv", out / f"metrics-{stage}.csv")
shutil.copyfile(data / "evals/gpu/samples.csv", out / "eval-photos-demo.csv")
runs = {s: load_checkpoint(data / f"runs/gpu-{s}") for s in ("separate", "joint")}
summary = {"weights_sha256": digest, "config": runs["joint"]["config"],
           "steps": {s: r["step"] for s, r in runs.items()},
           "sessions": {s: r["sessions"] for s, r in runs.items()}}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(json.dumps(summary["steps"]), "steps; weights", digest[:12])
PYEOF
echo "gpu_train.sh done in $(( $(date +%s) - start )) s; outputs in $OUT"
