#!/usr/bin/env bash
# Prepares .gpu/ for benchmarks/gpu/run_gpu.sh (benchmarks/gpu/gpu_payload.py says
# what it holds and why): Keras, pytest, hypothesis and their dependencies
# at this environment's versions, unpacked, compiled ones (optree) for
# CPython 3.11-3.14.
#
#   benchmarks/gpu/prepare_gpu_payload.sh [--python-versions 3.11 3.12 ...]
#
# The versions are those installed in $PYTHON, else .venv/bin/python, else
# python3; the wheels come from pip's configured index. The payload must
# stay within 64 MiB (checked).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -n "${PYTHON:-}" ]; then
  python="$PYTHON"
elif [ -x .venv/bin/python ]; then
  python=.venv/bin/python
else
  python=python3
fi
exec "$python" benchmarks/gpu/gpu_payload.py "$@"
