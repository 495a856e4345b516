# Sourced by benchmarks/gpu.sh and benchmarks/gpu_train.sh with their arguments, not run on its own.
# It makes the repository root the working folder, sets DRY=1 under --dry-run (else 0) and PY (the venv's python
# in a dry run where there is one, else $PYTHON or python3), exports OUT, BLINDBENCH_DATA (both made, defaults
# under data/) and PYTHONPATH, and defines the two steps both scripts take.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
PY=${PYTHON:-python3}
[[ -x .venv/bin/python && $DRY == 1 ]] && PY=.venv/bin/python
OUT=${OUT:-$PWD/data/gpu-out}
export OUT BLINDBENCH_DATA=${BLINDBENCH_DATA:-$PWD/data/gpu} PYTHONPATH=$PWD
mkdir -p "$OUT" "$BLINDBENCH_DATA"

# $OUT/machine.txt: the GPU (or "no GPU (dry run)") and the torch version
write_machine_txt() {
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no GPU (dry run)"
    $PY -c "import torch; print('torch', torch.__version__)"; } > "$OUT/machine.txt"
}

# unpack what gpu_pack.py packed (.gl/gpu), installing the wheels the loader needs from .whl where they are missing
unpack_gpu_pack() {
  $PY -c "import webdataset" 2>/dev/null || $PY -m pip install -q --no-index --find-links .whl webdataset braceexpand
  $PY benchmarks/gpu_unpack.py
}
