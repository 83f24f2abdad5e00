#!/usr/bin/env bash
# Make this machine ready to lint, test and demo the project, from a fresh
# Debian 12 with only python3, git and make:
#   - the Debian packages the tests need (Docker engine, debootstrap, ...);
#   - a Docker daemon that answers (started in the background when no init
#     system runs one, as on CI machines);
#   - the virtual environment .venv with the project and its dev extras,
#     rebuilt when pyproject.toml is newer than its stamp.
# Every step is skipped when already done, so `make` targets can call it
# freely.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
STAMP=$VENV/.ollama-ramdisk-installed
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/ollama-ramdisk-dockerd.log}

PACKAGES=(
    ca-certificates
    debootstrap
    docker.io
    git
    make
    python3
    python3-pip
    python3-venv
    rsync
    shellcheck
    strace
)

log() { printf 'ensure-host: %s\n' "$*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "needs root (or sudo) to run: $*"
        exit 1
    fi
}

ensure_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z ${APT_UPDATED:-} ]]; then
        as_root apt-get update -q
        APT_UPDATED=1
    fi
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
}

docker_answers() { as_root docker info >/dev/null 2>&1; }

ensure_docker() {
    if docker_answers; then
        return
    fi
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        log "starting docker.service"
        as_root systemctl start docker.service || true
    fi
    if ! docker_answers && [[ -z $(ls -A /sys/fs/cgroup 2>/dev/null) ]]; then
        # No init system mounted the cgroup hierarchies that dockerd needs.
        log "mounting the cgroup hierarchies"
        PACKAGES=(cgroupfs-mount)
        ensure_packages
        as_root cgroupfs-mount
    fi
    if ! docker_answers; then
        log "starting dockerd in the background (log: $DOCKERD_LOG)"
        as_root bash -c "setsid nohup dockerd >>'$DOCKERD_LOG' 2>&1 </dev/null &"
    fi
    local i
    for i in $(seq 1 60); do
        if docker_answers; then
            log "docker answers after ${i}s"
            return
        fi
        sleep 1
    done
    log "the Docker daemon did not answer within 60s; last lines of $DOCKERD_LOG:"
    as_root tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
}

ensure_venv() {
    if [[ -x $VENV/bin/python && -f $STAMP && ! $ROOT/pyproject.toml -nt $STAMP ]]; then
        return
    fi
    if [[ ! -x $VENV/bin/python ]]; then
        log "creating $VENV"
        python3 -m venv "$VENV"
    fi
    log "installing the project and its dev extras into $VENV"
    "$VENV/bin/python" -m pip install -q -e "${ROOT}[dev]"
    touch "$STAMP"
}

main() {
    local what=${1:-all}
    case $what in
        all) ensure_packages; ensure_docker; ensure_venv ;;
        packages) ensure_packages ;;
        docker) ensure_packages; ensure_docker ;;
        venv) ensure_packages; ensure_venv ;;
        *) log "usage: $0 [all|packages|docker|venv]"; exit 2 ;;
    esac
}

main "$@"
