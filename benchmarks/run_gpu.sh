#!/usr/bin/env bash
# Runs the GPU benchmark (benchmarks/gpu.py) for every installed backend on
# a CUDA machine that may have neither Keras nor a package registry: the
# wheels put in .gpu/whl by benchmarks/prepare_gpu_payload.sh are
# installed into a temporary folder, and the package is imported from this
# checkout's src/.
#
#   benchmarks/run_gpu.sh [OUTPUT_DIR] [gpu.py options ...]
#
# OUTPUT_DIR defaults to $OUT when set (the folder a remote run returns),
# else benchmarks/results. It receives gpu_<device>_<backend>.json and .md,
# gpu_<device>.md, the run's log and nvidia-smi's view of the GPU.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
output="${OUT:-$root/benchmarks/results}"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  output="$1"
  shift
fi
python="${PYTHON:-python3}"

site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
shopt -s nullglob
wheels=("$root"/.gpu/whl/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  "$python" -m pip install --quiet --no-index --no-deps --target "$site" \
    "${wheels[@]}"
fi
export PYTHONPATH="$site:$root/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

mkdir -p "$output"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap \
    --format=csv >"$output/nvidia-smi.csv" || true
fi
"$python" "$root/benchmarks/gpu.py" --output-dir "$output" "$@" 2>&1 \
  | tee "$output/gpu_run.log"
