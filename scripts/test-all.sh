#!/usr/bin/env bash
# Everything `make test` runs, side by side where the machine allows, on a
# fresh Debian 12 machine or one that ran it before (every step reuses what an
# earlier run built: the Ollama build, the test images, the wheels):
#
#   set-up     packages, the Docker engine, .venv (scripts/ensure-host.sh)
#   ollama     the pinned Ollama and its engine built from source, the test
#              models (CPU-bound, and the longest road: the jobs beside it run
#              at a lower CPU priority)
#   image      the Molecule test image (network and disk: built while the
#              engine compiles)
#   compat     the two Debian roots of `make compat` and the core's suites on
#              their Pythons, once the image is built
#   lint       ruff, yamllint, ansible-lint, shellcheck, playbook syntax
#   collection ansible-test sanity and ansible-lint on the built collection
#   parts      the mirror tests' registry (Docker's distribution, from the Go
#              module proxy) and promtool, before any test asks for them
#   swap-tests the tests that change this machine's swap, while Ollama builds,
#              ended before the unit tests and Molecule (which share its kernel)
#   unit       pytest, in parallel (pytest-xdist), once Ollama is built
#   molecule   each scenario in a process of its own, once Ollama and the
#              test image are there (MOLECULE_JOBS at a time)
#
# Usage: scripts/test-all.sh [all|lint|molecule]   (lint, molecule: that job alone)
#
# Every job's output goes to the terminal with its name in front, and whole to
# $TEST_LOGS/NAME.log; at the end a table says how long each took. The run
# fails when any job failed, after all of them ended.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=$ROOT/.venv/bin
LOGS=${TEST_LOGS:-$ROOT/.cache/test-logs}
# Workers of the unit suite; the suite waits on subprocesses (ansible-playbook,
# Ollama) more than it computes, so one more than the cores.
UNIT_JOBS=${UNIT_JOBS:-$(($(nproc) + 1))}
MOLECULE_JOBS=${MOLECULE_JOBS:-2}
# What `make molecule` runs: every scenario but the demo and the fleet
# benchmark's, the longest first.
SCENARIOS=(writeback default distribution refusals collection)
export PYTHONUNBUFFERED=1
export PATH=$BIN:$PATH
export OLLAMA_RAMDISK_TEST_IMAGE=${OLLAMA_RAMDISK_TEST_IMAGE:-ollama-ramdisk-test:bookworm}

started=$SECONDS
declare -A PID BEGAN TOOK
ORDER=()
FAILED=()

log() { printf 'test-all: %s\n' "$*"; }

# start [--yield] NAME COMMAND...: run it in the background, its lines
# prefixed with NAME. --yield: at a lower CPU priority (nice 10, inherited by
# everything it runs), for the jobs that nothing waits on while the Ollama
# build, on which everything else waits, is compiling.
start() {
    local niceness=0
    if [[ $1 == --yield ]]; then
        niceness=10
        shift
    fi
    local name=$1
    shift
    ORDER+=("$name")
    BEGAN[$name]=$SECONDS
    log "$name: started ($*)"
    (
        set +e -o pipefail
        renice -n "$niceness" -p "$BASHPID" >/dev/null
        # A job that is a function of several commands (lint, compat) fails at
        # its first failing one: errexit again inside, or a passing last command
        # would hide an earlier failure.
        (set -e; "$@") 2>&1 </dev/null | tee "$LOGS/$name.log" | sed -u "s/^/[$name] /"
        status=$?
        # When it ended, not when finish() got to it.
        printf '%s\n' "$SECONDS" >"$LOGS/$name.ended"
        exit "$status"
    ) &
    PID[$name]=$!
}

# finish NAME: wait for it; note how long it took and whether it passed.
finish() {
    local name=$1 status=0 took
    wait "${PID[$name]}" || status=$?
    took=$(($(cat "$LOGS/$name.ended" 2>/dev/null || echo "$SECONDS") - BEGAN[$name]))
    if ((status == 0)); then
        TOOK[$name]="${took}s"
        log "$name: passed in ${took}s"
        return 0
    fi
    TOOK[$name]="${took}s FAILED"
    log "$name: FAILED after ${took}s (log: $LOGS/$name.log)"
    FAILED+=("$name")
    return 1
}

lint() {
    shellcheck scripts/*.sh .ci/run
    ruff check .
    ruff format --check .
    yamllint --strict .
    ansible-lint
    local playbook
    for playbook in playbooks/*.yml; do
        ansible-playbook --syntax-check "$playbook"
    done
}

compat() {
    # Each compat root and its suite, one after another; nothing waits on them.
    scripts/core-tests.sh bullseye
    scripts/core-tests.sh trixie
}

parts() {
    # The other real parts the tests run, built (or found) once before they
    # start: the mirror's registry, and promtool for the metrics tests.
    scripts/ensure-host.sh registry
    scripts/ensure-host.sh promtool
}

molecule_scenarios() {
    # Each scenario is its own molecule process (own instances, own ephemeral
    # directory), MOLECULE_JOBS at a time; xargs fails if any of them failed.
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    printf '%s\n' "${SCENARIOS[@]}" | xargs -P "$MOLECULE_JOBS" -I{} \
        bash -c 'set -o pipefail; molecule test --scenario-name "$1" 2>&1 | sed -u "s/^/[$1] /"' _ {}
}

case ${1:-all} in
    all) ;;
    lint) lint; exit ;;
    molecule) molecule_scenarios; exit ;;
    *) log "usage: $0 [all|lint|molecule]"; exit 2 ;;
esac

mkdir -p "$LOGS"
log "set-up: packages, Docker engine, .venv"
scripts/ensure-host.sh </dev/null
log "set-up: done after $((SECONDS - started))s"

# The Ollama build is the longest road to the unit tests and Molecule: it
# keeps its CPU priority, the jobs beside it yield.
start ollama scripts/ensure-host.sh models
# Molecule waits on the test image too (network and disk, mostly).
start image scripts/build-test-image.sh
start --yield lint lint
start --yield collection scripts/collection-sanity.sh
start --yield parts parts
# The tests that add swap to this machine run now, and end before the unit
# tests and the Molecule instances start: those share its kernel, and a role
# run there would see that swap. They need no Ollama.
start --yield swap-tests "$BIN/pytest" -m machine_swap
# The compat roots share the test image's debootstrap cache: built after it,
# still beside the Ollama build.
image_ok=0
finish image && image_ok=1
((image_ok)) && start compat compat
finish swap-tests || true
ollama_ok=0
finish ollama && finish parts && ollama_ok=1
if ((ollama_ok)); then
    start unit "$BIN/pytest" -n "$UNIT_JOBS" -m "not machine_swap"
fi
if ((ollama_ok && image_ok)); then
    start molecule molecule_scenarios
fi
finish lint || true
finish collection || true
for name in compat unit molecule; do
    [[ -n ${PID[$name]:-} ]] && { finish "$name" || true; }
done

log "where the time went (the whole run: $((SECONDS - started))s):"
for name in "${ORDER[@]}"; do
    printf 'test-all:   %-10s from %5ss: %s\n' "$name" "$((BEGAN[$name] - started))" "${TOOK[$name]}"
done
if ((${#FAILED[@]})); then
    for name in "${FAILED[@]}"; do
        log "the end of $name's log ($LOGS/$name.log):"
        tail -n 60 "$LOGS/$name.log"
    done
    log "FAILED: ${FAILED[*]}"
    exit 1
fi
# The closing lines of the test runners, together.
grep -h -E '^=* ?[0-9]+ passed.* in [0-9.]+s' "$LOGS/unit.log" "$LOGS/swap-tests.log" \
    "$LOGS/compat.log" 2>/dev/null || true
log "all passed"
