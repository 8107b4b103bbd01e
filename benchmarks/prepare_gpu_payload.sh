#!/usr/bin/env bash
# Prepares .gpu/ for benchmarks/run_gpu.sh: a CUDA machine that has torch
# and JAX but neither Keras nor a package registry, and that receives only
# this checkout (plus the ignored folders it is told to carry), needs the
# wheels of Keras and of the two Keras dependencies such machines lack.
# The package itself is imported from the checkout's src/ there, so a
# payload never holds a stale copy of it.
#
#   benchmarks/prepare_gpu_payload.sh [PYTHON_VERSION]   # default 3.12
#
# Versions: those installed in this environment's Python ($PYTHON, else
# .venv/bin/python, else python3), or KERAS_VERSION, NAMEX_VERSION and
# OPTREE_VERSION when set. Wheels come from pip's configured index.
set -euo pipefail
cd "$(dirname "$0")/.."

target_python="${1:-3.12}"
if [ -n "${PYTHON:-}" ]; then
  python="$PYTHON"
elif [ -x .venv/bin/python ]; then
  python=.venv/bin/python
else
  python=python3
fi

installed() {
  "$python" -c "from importlib import metadata; print(metadata.version('$1'))"
}

keras_version="${KERAS_VERSION:-$(installed keras)}"
namex_version="${NAMEX_VERSION:-$(installed namex)}"
optree_version="${OPTREE_VERSION:-$(installed optree)}"

rm -rf .gpu/whl
mkdir -p .gpu/whl
# optree is compiled: the wheel must match the GPU machine's Python and
# platform, not this one's; keras and namex are pure Python.
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version "$target_python" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 \
  -d .gpu/whl \
  "keras==$keras_version" "namex==$namex_version" \
  "optree==$optree_version"

ls .gpu/whl
echo "Payload ready in .gpu/ (ignored by git): carry it with the checkout."
