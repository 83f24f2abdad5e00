#!/usr/bin/env bash
# ansible-lint, then `ansible-test sanity`, on the collection that scripts/build-collection.py
# builds, with the ansible-core that .venv pins, each test in the virtual
# environment ansible-test makes for it (--venv), on this machine's Python.
#
# ansible-test puts pip into those environments with a bootstrap script that
# it downloads from a site outside the package registries. The script is only
# a way to run a given pip release, so it is made here from that release's
# wheel on PyPI and saved where ansible-test looks for it first
# (~/.ansible/test/cache/get_pip_<version>.py).
#
# Usage: scripts/collection-sanity.sh [ansible-test sanity options...]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.venv/bin
PYTHON_VERSION=$("$BIN/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# The pip release ansible-test bootstraps into its environments.
pip_version=$("$BIN/python" - "$PYTHON_VERSION" <<'EOF'
import sys
from ansible_test._internal.host_configs import NativePythonConfig
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(NativePythonConfig(version=sys.argv[1]))["pip"])
EOF
)
bootstrap=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
wheels=$ROOT/.cache/wheels/pip-$pip_version
if [[ ! -s $bootstrap ]]; then
    mkdir -p "$wheels" "$(dirname "$bootstrap")"
    "$BIN/pip" download --quiet --no-deps --only-binary=:all: -d "$wheels" "pip==$pip_version"
    wheel=$(ls "$wheels"/pip-"$pip_version"-*.whl)
    # What get-pip does: pip run from its own wheel, installing itself and the
    # packages named; --no-setuptools and --no-wheel say which not to add.
    cat >"$bootstrap.tmp" <<EOF
import sys
sys.path.insert(0, "$wheel")
from pip._internal.cli.main import main
args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall", *args]))
EOF
    mv "$bootstrap.tmp" "$bootstrap"
fi

# ansible-test lists the files of the git repository around the tree, so the
# tree is assembled outside this checkout (whose build/ git ignores).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$("$BIN/python" "$ROOT/scripts/build-collection.py" --tree-only --work "$work")
cd "$tree"
# Inside the collection every module, filter and role is fully qualified:
# ansible-lint's production profile on the built tree (before ansible-test
# writes its tests/output there), with the collection where Ansible finds it.
# galaxy[no-repository] is left out: the project names no public repository
# address in galaxy.yml.
ANSIBLE_COLLECTIONS_PATH=$work NO_COLOR=1 "$BIN/ansible-lint" --offline \
    -c "$ROOT/.ansible-lint" --skip-list 'galaxy[no-repository]'

PATH=$BIN:$PATH "$BIN/ansible-test" sanity --venv --python "$PYTHON_VERSION" --color no "$@"
