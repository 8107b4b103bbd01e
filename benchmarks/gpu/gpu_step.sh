#!/usr/bin/env bash
# One bounded step of benchmarks/gpu/run_gpu.sh; prints its summary.txt line.
#
#   benchmarks/gpu/gpu_step.sh NAME LIMIT LOG junit|benchmark REPORT COMMAND...
#
# Runs COMMAND for at most LIMIT seconds, its output to LOG. At the limit
# it gets SIGINT, so that pytest still writes its JUnit XML and the
# failures so far, and SIGKILL 20 s later. Then benchmarks/gpu/gpu_summary.py
# reads REPORT (the JUnit file, or a glob of the benchmark's JSON written
# during the step) into one line: exit status, seconds, timed out or not,
# and the counts. $PYTHON runs it (default python3).
set -uo pipefail
name="$1" seconds="$2" log="$3" kind="$4" report="$5"
shift 5
here="$(cd "$(dirname "$0")" && pwd)"
begin=$SECONDS
since="$(date +%s)"
timeout -s INT --kill-after=20 "$seconds" "$@" >"$log" 2>&1
code=$?
exec "${PYTHON:-python3}" "$here/gpu_summary.py" "$name" "$code" \
  $((SECONDS - begin)) "$seconds" "--$kind" "$report" --since "$since"
