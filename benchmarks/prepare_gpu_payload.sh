#!/usr/bin/env bash
# Prepares .gpu/ for benchmarks/run_gpu.sh: a CUDA machine that has torch,
# JAX, pytest and hypothesis but not Keras nor a package registry, and that
# receives only this checkout (plus the ignored folders it is told to
# carry: .gpu/), needs the wheels of Keras and of the Keras dependencies
# such machines may lack. run_gpu.sh installs those whose package the
# machine's Python lacks. The package itself is imported from the
# checkout's src/ there, so a payload never holds a stale copy of it.
#
#   benchmarks/prepare_gpu_payload.sh [PYTHON_VERSION ...]
#
# Python versions: those the GPU machine may run (default 3.11 3.12 3.13):
# optree is compiled, one wheel per version; the others are pure Python.
# Package versions: those installed in this environment's Python ($PYTHON,
# else .venv/bin/python, else python3). Wheels come from pip's configured
# index. The payload must stay within 64 MiB (checked).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(3.11 3.12 3.13)
fi
if [ -n "${PYTHON:-}" ]; then
  python="$PYTHON"
elif [ -x .venv/bin/python ]; then
  python=.venv/bin/python
else
  python=python3
fi

# Keras and what it imports; numpy, ml-dtypes and packaging come with JAX
# and pytest, h5py is only needed for the legacy .h5 format.
packages=(keras namex optree absl-py rich markdown-it-py mdurl pygments
  typing-extensions)
requirements=()
for package in "${packages[@]}"; do
  version="$("$python" -c \
    "from importlib import metadata; print(metadata.version('$package'))")"
  requirements+=("$package==$version")
done

rm -rf .gpu/whl
mkdir -p .gpu/whl
for target in "${targets[@]}"; do
  "$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version "$target" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl "${requirements[@]}"
done

ls .gpu/whl
size=$(du -sm .gpu | cut -f1)
if [ "$size" -gt 64 ]; then
  echo "The payload is $size MiB, over 64 MiB." >&2
  exit 1
fi
echo "Payload ready in .gpu/ ($size MiB, ignored by git): carry it with" \
  "the checkout."
