#!/usr/bin/env bash
# One call on a CUDA machine: the GPU tests (tests/test_gpu.py) and the
# device-aware tests for torch and JAX, then the GPU benchmark
# (benchmarks/gpu.py, which checks every case it times), within a time
# limit, every result in one folder.
#
#   benchmarks/run_gpu.sh [--smoke] [--output-dir DIR] [--seconds N]
#                         [--backends "torch jax"] [-- gpu.py options ...]
#
# --seconds: the whole run's limit (default 330: a 6-minute window with
#   room for start-up, so that a failed run can be repeated in the same
#   window). The GPU tests (both backends side by side) get at most a
#   quarter of it, the device-aware tests a third; the benchmark gets what
#   is left, shared by the backends.
# --smoke: the same steps on a machine without a GPU (the tests' CPU
#   variants, the benchmark's tiny cases). Without it, a machine without a
#   CUDA GPU is refused in one line (exit status 2).
# GPU_TESTS, DEVICE_TESTS (environment): pytest arguments replacing the
#   GPU tests (tests/test_gpu.py) or the device-aware tests (test_dispatch,
#   test_kernels, test_mixed_precision), e.g. "tests/test_gpu.py -k
#   large_map"; empty: that step is not run.
#
# The machine may have neither Keras nor a package registry: the wheels
# that benchmarks/prepare_gpu_payload.sh put in .gpu/whl are installed,
# those whose package its Python lacks, into a temporary folder, and the
# package is imported from this checkout's src/. TensorFlow is not run.
#
# Output folder (default $OUT when set, else benchmarks/results):
# nvidia-smi.csv; gpu_tests_<backend> and device_tests_<backend>, .log
# and .xml (JUnit); the benchmark's
# gpu_<device>_<backend>.json and .md, gpu_<device>.md and gpu_run.log;
# summary.txt, each step's exit status and seconds. The exit status is 0
# only when every step passed (a benchmark check that printed FAIL fails
# its step).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1

output="${OUT:-$root/benchmarks/results}"
limit=330
backends="torch jax"
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --output-dir) output="$2"; shift ;;
    --seconds) limit="$2"; shift ;;
    --backends) backends="$2"; shift ;;
    --) shift; break ;;
    *) echo "run_gpu.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done

if [ "$smoke" = 0 ] && ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "run_gpu.sh: no CUDA GPU on this machine (nvidia-smi lists none);" \
    "--smoke runs the same steps on a CPU"
  exit 2
fi

python="${PYTHON:-python3}"
started=$SECONDS
mkdir -p "$output"
summary="$output/summary.txt"
: >"$summary"
status=0

# Keras and the dependencies the machine lacks, from the payload: each
# wheel for this Python (pure Python, or compiled for its version) whose
# package is missing is unpacked into a temporary folder (a wheel is a zip
# of the installed files; no pip or index needed).
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
shopt -s nullglob
tag="$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
installed=()
for wheel in "$root"/.gpu/whl/*-py3-none-any.whl \
  "$root"/.gpu/whl/*-"$tag"-"$tag"-*.whl; do
  name="$(basename "$wheel" | cut -d- -f1)"
  if ! "$python" -c "import importlib.metadata as m; m.version('$name')" \
    2>/dev/null; then
    "$python" -m zipfile -e "$wheel" "$site" && installed+=("$name") \
      || echo "unpacking $wheel failed" | tee -a "$summary"
  fi
done
echo "installed from .gpu/whl: ${installed[*]:-nothing}" | tee -a "$summary"
export PYTHONPATH="$site:$root/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}"
if [ "$smoke" = 0 ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap \
    --format=csv >"$output/nvidia-smi.csv" 2>&1
fi

step() {  # step NAME SECONDS LOG COMMAND...: time-limited, output to LOG
  local name="$1" seconds="$2" log="$3" begin=$SECONDS code
  shift 3
  timeout --kill-after=10 "$seconds" "$@" >"$log" 2>&1
  code=$?
  echo "$name: exit $code after $((SECONDS - begin)) s (limit $seconds s)" \
    | tee -a "$summary"
}

run_tests() {  # run_tests NAME SECONDS PYTEST_ARGUMENTS...: each backend
  local name="$1" seconds="$2" backend
  shift 2
  for backend in "${names[@]}"; do
    # Side by side: the GPU is shared, so JAX allocates as it goes.
    KERAS_BACKEND="$backend" XLA_PYTHON_CLIENT_PREALLOCATE=false \
      step "$name $backend" "$seconds" "$output/${name}_$backend.log" \
      "$python" -m pytest -q -m "not once" -p no:cacheprovider -rfEs \
      --durations=10 --junitxml="$output/${name}_$backend.xml" "$@" &
  done
  wait
  for backend in "${names[@]}"; do
    echo "--- $name $backend"
    grep -E '^(FAILED|ERROR) |[0-9]+ (passed|failed)' "$output/${name}_$backend.log"
  done
}

# First the GPU tests, then the other tests whose results depend on the
# device (the layer's own tests take too long for the window), the two
# backends side by side; a step that ends early leaves its time to the
# benchmark.
read -r -a gpu_tests <<<"${GPU_TESTS-tests/test_gpu.py}"
read -r -a device_tests <<<"${DEVICE_TESTS-tests/test_dispatch.py \
  tests/test_kernels.py tests/test_mixed_precision.py}"
read -r -a names <<<"$backends"
[ ${#gpu_tests[@]} -eq 0 ] \
  || run_tests gpu_tests $((limit / 4)) "${gpu_tests[@]}"
[ ${#device_tests[@]} -eq 0 ] \
  || run_tests device_tests $((limit / 3)) "${device_tests[@]}"

# The benchmark: what is left, less a margin for writing the reports.
left=$((limit - (SECONDS - started) - 15))
grace=$((left / (4 * ${#names[@]})))
budget=$(((left / ${#names[@]}) - grace))
if [ "$budget" -lt 10 ]; then
  echo "benchmark: not run, $left s left" | tee -a "$summary"
else
  smoke_flag=()
  [ "$smoke" = 1 ] && smoke_flag=(--smoke)
  # float16 runs the same kernels as bfloat16 (MEASURED-H200.md): left
  # out unless asked for (`-- --policies ...`).
  step benchmark "$((left + 10))" "$output/gpu_run.log" \
    "$python" benchmarks/gpu.py "${smoke_flag[@]}" \
    --backends "${names[@]}" --policies float32 mixed_bfloat16 \
    --budget "$budget" --grace "$grace" --steps 5 --max-case-seconds 3 \
    --output-dir "$output" "$@"
  grep -E 'cases checked|^- (FAIL|NOT CHECKED) |^===|no results|wrote|Budget' \
    "$output/gpu_run.log"
fi
# Every step must have run and passed.
if grep -qE ': exit [1-9]|not run|failed$' "$summary"; then
  status=1
fi
echo "total: $((SECONDS - started)) s, exit $status" | tee -a "$summary"
exit "$status"
