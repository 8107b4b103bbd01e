#!/usr/bin/env bash
# One call on a CUDA machine with torch and JAX, numbers first, every step
# bounded, within --seconds (default 400, under the 7 minutes a lent GPU
# machine allows one command), every result in one folder:
#
#   1. preflight (benchmarks/gpu/gpu_preflight.py): Python, pytest,
#      hypothesis, each backend's versions with CUDA and cuDNN, the device
#      it sees and the Keras it imports. Stops the run in one line (exit
#      status 2) when pytest or hypothesis does not import or no backend
#      can run; a backend that does not import, whose Keras does not
#      import or that sees no GPU is "not run: <reason>", the other goes on;
#   2. the checked benchmark's headline cases (benchmarks/gpu/gpu.py):
#      naive block and `auto`, float32 and mixed_bfloat16, 128x128 batch 8
#      and 256x256 batch 2, one backend after the other. A case that
#      raises (other than out of memory), fails its check or is not
#      checked makes the step exit 1;
#   3. the GPU-specific tests (marked `gpu_specific`: their GPU variant
#      checks what the CPU pass cannot, flash dispatch, device placement,
#      GPU memory), the backends side by side.
#
#   benchmarks/gpu/run_gpu.sh [--smoke] [--output-dir DIR] [--seconds N]
#       [--backends "torch jax"] [--payload DIR] [--pack]
#       [-- gpu.py options ...]
#
# --smoke: the same steps on a CPU (no GPU check; the benchmark's tiny
#   maps; the GPU variants skip), with this environment's packages where
#   there is no payload.
# --payload: the folder benchmarks/gpu/prepare_gpu_payload.sh made
#   (default .gpu): its packages come first on PYTHONPATH, so its pinned
#   Keras, pytest and hypothesis are used even where the machine has
#   others. Without --smoke a missing payload stops the run in one line.
# --pack: the output folder gets four files, for runners that return only
#   a few: summary.txt, preflight.log, the joined benchmark report
#   gpu_<device>.md, and gpu_run.tar.gz holding every file of the run.
# GPU_TESTS (environment): pytest arguments replacing step 3's, e.g.
#   "tests/test_gpu.py -k large_map"; empty: not asked for.
#
# A step that reaches its limit gets SIGINT, so pytest still writes its
# JUnit XML and the failures so far, and SIGKILL 20 s later. Output
# folder (default $OUT when set, else benchmarks/results): preflight.log,
# nvidia-smi.csv, benchmark_<backend>.log with gpu_<device>_<backend>.json
# and .md and gpu_<device>.md, gpu_tests_<backend>.log and .xml (JUnit),
# and summary.txt: one line per step (benchmarks/gpu/gpu_summary.py)
# saying whether it ran, its exit status and seconds against its limit,
# whether it timed out, and the passed, failed and skipped counts; the
# last line the total. The exit status is 0 only when every step ran and
# passed.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root" || exit 1

output="${OUT:-$root/benchmarks/results}"
limit=400
backends="torch jax"
payload="$root/.gpu"
smoke=0
pack=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --output-dir) output="$2"; shift ;;
    --seconds) limit="$2"; shift ;;
    --backends) backends="$2"; shift ;;
    --payload) payload="$2"; shift ;;
    --pack) pack=1 ;;
    --) shift; break ;;
    *) echo "run_gpu.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done
for backend in $backends; do
  case "$backend" in
    torch | jax) ;;
    *) echo "run_gpu.sh: --backends takes torch and jax;" \
      "Received: $backend" >&2; exit 64 ;;
  esac
done

python="${PYTHON:-python3}"
started=$SECONDS
tag="$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')" \
  || { echo "run_gpu.sh: $python does not run" >&2; exit 2; }
if [ -f "$payload/MANIFEST.txt" ]; then
  paths="$payload/$tag:$payload/site:"
elif [ "$smoke" = 1 ]; then
  paths=""
else
  echo "run_gpu.sh: no payload in $payload: make it with" \
    "benchmarks/gpu/prepare_gpu_payload.sh and carry it with the checkout" >&2
  exit 2
fi
export PYTHONPATH="$paths$root/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The machine's own pytest plugins may not fit the payload's pytest.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"

mkdir -p "$output"
lines="$(mktemp -d)"
pack_up() {  # --pack: the run's files into the output folder as four
  local file
  tar -czf "$packed/gpu_run.tar.gz" -C "$output" .
  for file in "$output"/summary.txt "$output"/preflight.log \
    "$output"/gpu_*.md; do
    case "$file" in
      *_torch.md | *_jax.md | *_tensorflow.md) ;;  # in the joined report
      *) [ -f "$file" ] && cp "$file" "$packed/" ;;
    esac
  done
}
if [ "$pack" = 1 ]; then
  # Written elsewhere, packed into the output folder whatever ends the run.
  packed="$output"
  output="$lines/run"
  mkdir "$output"
  trap 'pack_up; rm -rf "$lines"' EXIT
else
  trap 'rm -rf "$lines"' EXIT
fi
summary="$output/summary.txt"
: >"$summary"

left() { echo $((limit - (SECONDS - started))); }
# Seconds a step may outlast its limit (SIGKILL's 20 s after SIGINT, and
# its summary line): kept free so that the run ends within --seconds.
slack=25
note() { echo "$1" | tee -a "$summary"; }

bounded() {  # bounded NAME ...: benchmarks/gpu/gpu_step.sh, line to $lines
  PYTHON="$python" benchmarks/gpu/gpu_step.sh "$@" >"$lines/$1"
}

# 1. Preflight.
if [ "$smoke" = 0 ]; then
  timeout 20 nvidia-smi --format=csv \
    --query-gpu=name,memory.total,driver_version,compute_cap 2>&1 \
    | tee "$output/nvidia-smi.csv"
fi
smoke_flag=()
[ "$smoke" = 1 ] && smoke_flag=(--smoke)
begin=$SECONDS
read -r -a asked <<<"$backends"
timeout -s INT --kill-after=10 100 "$python" benchmarks/gpu/gpu_preflight.py \
  --backends "${asked[@]}" --payload "$payload" "${smoke_flag[@]}" \
  --run-file "$output/backends.txt" 2>"$lines/abort" \
  | tee "$output/preflight.log"
code=$?
note "preflight: ran $((SECONDS - begin)) s (limit 100 s), exit $code"
if [ "$code" != 0 ]; then
  # Its one line, or why there is none (e.g. it reached its limit).
  [ -s "$lines/abort" ] || echo "run_gpu.sh: preflight: ended with exit" \
    "$code and no reason (124: reached its 100 s limit)" >"$lines/abort"
  tail -n 1 "$lines/abort" | tee -a "$summary" >&2
  exit 2
fi
read -r -a names <"$output/backends.txt"
grep ': not run: ' "$output/backends.txt" | while read -r backend why; do
  for name in benchmark gpu_tests; do
    note "$name ${backend%:}: $why"
  done
done

# Step limits, from measured times: `--smoke` in a bare venv holding torch
# 2.14.1, JAX 0.10.2 and the payload, on a loaded 2-core CPU (2026-12-07/08,
# three runs: 146, 94 and 200 s in all, all exit 0; the last at load average
# 8-10), and the H200's whole benchmark run (release
# 0.1.x: about 390 s for some 110 cases on two backends, so 2-4 s a case
# besides torch's 106 s `chunked` at 256x256, which is not run here).
# - preflight: 100 s (above); took 24, 12, 32 s, two probes side by side
#   importing torch, JAX and Keras. Expected 10-30 s on a GPU host.
# - benchmark, per backend: cases start for BUDGET s, then GRACE s to finish
#   the last one, plus START_UP s for Python, Keras, the backend, the GPU and
#   the matmul roof: 95 s. The smoke's 8 tiny cases took 29, 16, 35 s (torch),
#   45, 26, 52 s (JAX; at load 8-10 the budget left 2 of them not reached),
#   mostly start-up and compiling; on a GPU the 8 headline
#   cases at 2-5 s each (compile, 5 timed steps of at most 0.2 s, the check)
#   come to 20-40 s after start-up: 35-60 s.
# - GPU-specific tests: the rest of --seconds less SLACK (277, 321, 256 s in
#   the smoke, 200-240 s on a GPU host). The smoke ran their CPU parts in 31,
#   27, 55 s (torch), 48, 40, 81 s (JAX), side by side, GPU variants skipped.
#   Their CPU twins took 20 s (torch) and 32 s (JAX) on their own; on a GPU
#   each does the same work plus compiling for it (JAX) and its 256x256 map,
#   whose steps take 0.2 s there: 60-110 s expected.
# Expected on a GPU host: 20 + 2 x 60 + 110 = 250 s at most, of 400 s.
budget=$((limit * 45 / 400))
grace=20
start_up=30
headline=(--shapes 128x8x64 256x2x64)
[ "$smoke" = 1 ] && headline=()
for backend in "${names[@]}"; do
  seconds=$((budget + grace + start_up))
  if [ "$(left)" -lt $((seconds + slack)) ]; then
    note "benchmark $backend: not run: $(left) s left"
    continue
  fi
  bounded "benchmark $backend" "$seconds" "$output/benchmark_$backend.log" \
    benchmark "$output/gpu_*_$backend.json" \
    "$python" benchmarks/gpu/gpu.py "${smoke_flag[@]}" --backends "$backend" \
    "${headline[@]}" --implementations naive auto \
    --policies float32 mixed_bfloat16 --budget "$budget" --grace "$grace" \
    --steps 5 --max-case-seconds 3 --output-dir "$output" "$@"
  tee -a "$summary" <"$lines/benchmark $backend"
  # The table, the checks and the targets that have a verdict.
  grep -E '^\| [0-9]|cases checked|^- (FAIL|NOT CHECKED) |: (PASS|FAIL)' \
    "$output/benchmark_$backend.log"
done

# 3. The GPU-specific tests, the backends side by side, with the time
# left.
read -r -a gpu_tests <<<"${GPU_TESTS-tests/test_gpu.py tests/test_device.py \
  tests/test_dispatch.py tests/test_kernels.py tests/test_layers.py \
  tests/test_mixed_precision.py -m gpu_specific}"
seconds=$(($(left) - slack))
if [ ${#gpu_tests[@]} -eq 0 ]; then
  note "gpu_tests: not asked for"
elif [ "$seconds" -lt 20 ]; then
  for backend in "${names[@]}"; do
    note "gpu_tests $backend: not run: $(left) s left"
  done
else
  for backend in "${names[@]}"; do
    # Side by side on one GPU, so JAX allocates as it goes.
    KERAS_BACKEND="$backend" XLA_PYTHON_CLIENT_PREALLOCATE=false \
      bounded "gpu_tests $backend" "$seconds" \
      "$output/gpu_tests_$backend.log" junit \
      "$output/gpu_tests_$backend.xml" \
      "$python" -m pytest -q -p no:cacheprovider \
      -p _hypothesis_pytestplugin -rfEs --durations=10 \
      --junitxml="$output/gpu_tests_$backend.xml" "${gpu_tests[@]}" &
  done
  wait
  for backend in "${names[@]}"; do
    tee -a "$summary" <"$lines/gpu_tests $backend"
    grep -E '^(FAILED|ERROR) ' "$output/gpu_tests_$backend.log"
  done
fi

# Every step must have run and passed.
status=0
if grep -qE ', exit [1-9]|: not run' "$summary"; then
  status=1
fi
note "total: $((SECONDS - started)) s of $limit s, exit $status"
exit "$status"
