#!/usr/bin/env bash
# The unit suite again and again on a busy machine: a test that waits on a
# moment instead of an event fails here first. One busy loop per core runs
# beside each run of the whole suite, split as `make test` splits it: the
# swap tests alone (they change the machine's swap), then the rest with
# `pytest -n $(nproc)+1`. RUNS runs or until one fails; each run's results,
# time and load average are printed, and the loops are stopped at the end.
#
# Usage: scripts/unit-under-load.sh [RUNS] [pytest options...]   (RUNS: 10)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
runs=${1:-10}
shift || true
jobs=$(($(nproc) + 1))

loops=()
stop_loops() { if ((${#loops[@]})); then kill "${loops[@]}" 2>/dev/null || true; fi; }
trap stop_loops EXIT
for _ in $(seq "$(nproc)"); do
    bash -c 'while :; do :; done' &
    loops+=($!)
done

for run in $(seq "$runs"); do
    began=$SECONDS
    log=.cache/unit-under-load.$run.log
    status=0
    {
        .venv/bin/pytest -q -p no:cacheprovider -m machine_swap "$@" &&
            .venv/bin/pytest -q -p no:cacheprovider -n "$jobs" -m "not machine_swap" "$@"
    } >"$log" 2>&1 || status=$?
    summary=$(grep -E '^=*.* (passed|failed|error)' "$log" | paste -sd ';' -)
    printf 'unit-under-load: run %d of %d: exit %d in %ds, load %s: %s\n' "$run" "$runs" \
        "$status" "$((SECONDS - began))" "$(cut -d' ' -f1-3 /proc/loadavg)" "$summary"
    if ((status != 0)); then
        grep -E '^(FAILED|ERROR) ' "$log" || true
        exit "$status"
    fi
done
echo "unit-under-load: $runs runs in a row, all green"
