#!/usr/bin/env bash
# One call on a CUDA machine with torch and JAX, numbers first, every step
# bounded, within --seconds (default 330: 6 minutes of command time with
# room to spare), every result in one folder:
#
#   1. preflight (benchmarks/gpu/gpu_preflight.py): Python, pytest, hypothesis,
#      each backend's versions with CUDA and cuDNN, the device it sees and
#      the Keras it imports. Stops the run in one line (exit status 2) when
#      pytest, hypothesis or Keras does not import or no backend sees a
#      GPU; a backend without a GPU is "not run: no GPU", the other goes on;
#   2. the checked benchmark's headline cases (benchmarks/gpu/gpu.py): naive
#      block and `auto`, float32 and mixed_bfloat16, 128x128 batch 8 and
#      256x256 batch 2, one backend after the other;
#   3. the GPU tests (tests/test_gpu.py), the backends side by side;
#   4. the device tests (test_dispatch, test_kernels, test_mixed_precision),
#      side by side, with the time left.
#
#   benchmarks/gpu/run_gpu.sh [--smoke] [--output-dir DIR] [--seconds N]
#       [--backends "torch jax"] [--payload DIR] [--pack]
#       [-- gpu.py options ...]
#
# --smoke: the same steps on a CPU (no GPU check; the benchmark's tiny
#   maps), with this environment's packages where there is no payload.
# --payload: the folder benchmarks/gpu/prepare_gpu_payload.sh made (default
#   .gpu): its packages come first on PYTHONPATH, so its pinned Keras,
#   pytest and hypothesis are used even where the machine has others.
#   Without --smoke a missing payload stops the run in one line.
# --pack: the output folder gets four files, for runners that return only
#   a few: summary.txt, preflight.log, the joined benchmark report
#   gpu_<device>.md, and gpu_run.tar.gz holding every file of the run.
# GPU_TESTS, DEVICE_TESTS (environment): pytest arguments replacing steps
#   3 and 4, e.g. "tests/test_gpu.py -k large_map"; empty: not asked for.
#
# A step that reaches its limit gets SIGINT, so pytest still writes its
# JUnit XML and the failures so far, and SIGKILL 20 s later. Output
# folder (default $OUT when set, else benchmarks/results): preflight.log,
# nvidia-smi.csv, benchmark_<backend>.log with gpu_<device>_<backend>.json
# and .md and gpu_<device>.md, gpu_tests_<backend> and
# device_tests_<backend> .log and .xml (JUnit), and summary.txt: one line
# per step (benchmarks/gpu/gpu_summary.py) saying whether it ran, its exit
# status and seconds, whether it timed out, and the passed, failed and
# skipped counts. The exit status is 0 only when every step ran and passed.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root" || exit 1

output="${OUT:-$root/benchmarks/results}"
limit=330
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
  for name in benchmark gpu_tests device_tests; do
    note "$name ${backend%:}: $why"
  done
done

# 2. The headline cases, one backend at a time (timings and memory are
# the GPU's alone). A worker starts no case after --budget seconds and is
# stopped --grace seconds later.
headline=(--shapes 128x8x64 256x2x64)
[ "$smoke" = 1 ] && headline=()
budget=$((limit * 55 / 330))
for backend in "${names[@]}"; do
  seconds=$((budget + 35))
  if [ "$(left)" -lt $((seconds + slack)) ]; then
    note "benchmark $backend: not run: $(left) s left"
    continue
  fi
  bounded "benchmark $backend" "$seconds" "$output/benchmark_$backend.log" \
    benchmark "$output/gpu_*_$backend.json" \
    "$python" benchmarks/gpu/gpu.py "${smoke_flag[@]}" --backends "$backend" \
    "${headline[@]}" --implementations naive auto \
    --policies float32 mixed_bfloat16 --budget "$budget" --grace 20 \
    --steps 5 --max-case-seconds 3 --output-dir "$output" "$@"
  tee -a "$summary" <"$lines/benchmark $backend"
  # The table, the checks and the targets that have a verdict.
  grep -E '^\| [0-9]|cases checked|^- (FAIL|NOT CHECKED) |: (PASS|FAIL)' \
    "$output/benchmark_$backend.log"
done

run_tests() {  # run_tests NAME SECONDS PYTEST_ARGUMENTS...: side by side
  local name="$1" seconds="$2" backend
  shift 2
  if [ "$seconds" -lt 20 ]; then
    for backend in "${names[@]}"; do
      note "$name $backend: not run: $(left) s left"
    done
    return
  fi
  for backend in "${names[@]}"; do
    # Side by side on one GPU, so JAX allocates as it goes.
    KERAS_BACKEND="$backend" XLA_PYTHON_CLIENT_PREALLOCATE=false \
      bounded "$name $backend" "$seconds" "$output/${name}_$backend.log" \
      junit "$output/${name}_$backend.xml" \
      "$python" -m pytest -q -m "not once" -p no:cacheprovider \
      -p _hypothesis_pytestplugin -rfEs --durations=10 \
      --junitxml="$output/${name}_$backend.xml" "$@" &
  done
  wait
  for backend in "${names[@]}"; do
    tee -a "$summary" <"$lines/$name $backend"
    grep -E '^(FAILED|ERROR) ' "$output/${name}_$backend.log"
  done
}

# 3 and 4. The tests, the GPU tests first; the device tests get what is
# left.
read -r -a gpu_tests <<<"${GPU_TESTS-tests/test_gpu.py}"
read -r -a device_tests <<<"${DEVICE_TESTS-tests/test_dispatch.py \
  tests/test_kernels.py tests/test_mixed_precision.py}"
seconds=$((limit * 60 / 330))
[ "$seconds" -le $(($(left) - slack)) ] || seconds=$(($(left) - slack))
if [ ${#gpu_tests[@]} -eq 0 ]; then
  note "gpu_tests: not asked for"
else
  run_tests gpu_tests "$seconds" "${gpu_tests[@]}"
fi
if [ ${#device_tests[@]} -eq 0 ]; then
  note "device_tests: not asked for"
else
  run_tests device_tests $(($(left) - slack)) "${device_tests[@]}"
fi

# Every step must have run and passed.
status=0
if grep -qE ', exit [1-9]|: not run' "$summary"; then
  status=1
fi
note "total: $((SECONDS - started)) s of $limit s, exit $status"
exit "$status"
