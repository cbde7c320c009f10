#!/usr/bin/env bash
# Runs the test suite while other processes keep every core busy: the suite asserts behaviour, never
# timing or scheduling, and must pass on a loaded machine (a loaded CI runner, a shared login node).
#
# Usage: tools/suite_under_load.sh [runs] [busy processes per core] [pytest arguments...]
#   defaults: 3 runs, 1 busy process per core, the whole suite (tests/).
# Uses the nnpk importable by `python` (set PYTHON to choose the interpreter). Prints each run's summary
# line, its duration and the load average, and exits non-zero if any run failed.
set -uo pipefail
runs="${1:-3}"; per_core="${2:-1}"; shift 2 2>/dev/null || shift $#
python="${PYTHON:-python}"
cd "$(dirname "$0")/.."
cores="$(nproc)"
busy=$((cores * per_core))
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap stop EXIT
for _ in $(seq "$busy"); do ( while :; do :; done ) & pids+=("$!"); done
echo "$busy busy processes on $cores cores; $runs runs of: $python -m pytest -q -p no:cacheprovider ${*:-tests}"
failed=0
for run in $(seq "$runs"); do
  start=$(date +%s)
  out="$("$python" -m pytest -q -p no:cacheprovider "${@:-tests}" 2>&1)"
  code=$?
  summary="$(printf '%s\n' "$out" | grep -E '(passed|failed|error)' | tail -1)"
  echo "run $run: exit $code, $(( $(date +%s) - start )) s, load $(cut -d' ' -f1-3 /proc/loadavg): $summary"
  if [ "$code" -ne 0 ]; then
    failed=1
    printf '%s\n' "$out" | grep -E '^(FAILED|ERROR)' | head -20
  fi
done
exit "$failed"
