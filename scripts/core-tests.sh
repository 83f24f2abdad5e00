#!/usr/bin/env bash
# The core's unit tests on another Debian's own Python: the core claims
# Python 3.9 (Debian 11) and newer, and this is what backs the claim.
#
# Runs as root in a container of a plain Debian root (KIND=core of
# scripts/build-test-image.sh: the suite's python3, pip and PyYAML), allowed to
# mount, so the tmpfs, ownership and hostile-store tests run for real. pytest
# and hypothesis are the project's (pyproject.toml), downloaded as wheels for
# that Python by the host's pip and installed offline in the container. Left out: what needs Ansible, the real Ollama or
# promtool (tests/ of the modules, roles and playbooks; test_real_ollama and test_pull;
# test_metrics), and the test of the console script pip installs (the project
# is not installed here, only its tree); they run on the host in `make unit`.
#
# Usage: scripts/core-tests.sh SUITE [PYTEST ARGS...]   (SUITE: bullseye, trixie)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SUITE=${1:?usage: scripts/core-tests.sh SUITE [PYTEST ARGS...]}
shift
IMAGE=ollama-ramdisk-core:$SUITE
# The tests that need neither Ansible, nor Ollama, nor promtool.
EXCLUDE='^tests/test_(module_|role_|playbooks|size_grammar|defaults|real_ollama|pull\.py|metrics|benchmarks_quick|collection)'

log() { printf 'core-tests: %s\n' "$*" >&2; }

SUITE=$SUITE KIND=core "$ROOT/scripts/build-test-image.sh"
version=$(docker run --rm "$IMAGE" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
wheels=${CACHE_DIR:-$ROOT/.cache}/wheels-py$version
if [[ ! -f $wheels/.complete ]]; then
    log "downloading pytest and hypothesis for Python $version"
    rm -rf "$wheels"
    "$ROOT/.venv/bin/pip" download --quiet --dest "$wheels" --only-binary=:all: \
        --python-version "$version" --implementation py --abi none --platform any \
        'pytest>=8' 'hypothesis>=6.100' exceptiongroup tomli typing_extensions
    # (the last three: what pytest and hypothesis need below Python 3.11, which
    # pip's resolver leaves out when it evaluates their markers on the host)
    touch "$wheels/.complete"
fi

tests=()
for path in "$ROOT"/tests/test_*.py; do
    relpath=${path#"$ROOT/"}
    [[ $relpath =~ $EXCLUDE ]] || tests+=("$relpath")
done
log "${#tests[@]} test files on $SUITE's Python $version"
# The tree is copied into the container: the tests write caches and stores
# beside themselves, and nothing they do may touch the checkout.
tar -C "$ROOT" --exclude=__pycache__ --exclude=.hypothesis \
    -cf - module_utils/ollama_ramdisk tests pyproject.toml |
    docker run --rm -i --network none --cap-add SYS_ADMIN \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        -v "$wheels:/wheels:ro" \
        -e PYTHONPATH=/project/module_utils:/project/tests -e PYTHONDONTWRITEBYTECODE=1 \
        -e OLLAMA_RAMDISK_SIGNAL_BATCHES=1 \
        -e PIP_BREAK_SYSTEM_PACKAGES=1 -e PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$IMAGE" /bin/sh -euc '
            python3 -m pip install --quiet --no-index --find-links /wheels pytest hypothesis
            mkdir /project && cd /project && tar -xf -
            exec python3 -m pytest -p no:cacheprovider -q \
                --deselect tests/test_cli.py::test_the_console_script_exits_2_on_a_bad_name "$@"
        ' sh "${tests[@]}" "$@"
