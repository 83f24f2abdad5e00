#!/usr/bin/env bash
# Loads from the RAM disk against the disk on a GPU server, with Ollama's CUDA
# engine built here: the load benchmark (benchmarks/loads.py --gpu) on models
# of a GPU server's size. One command, as root, on a host with the NVIDIA
# driver, the CUDA toolkit (nvcc), CMake, a C++ compiler and python3 with numpy:
#
#   sudo benchmarks/gpu/run.sh [KIT.tar.gz]
#
# KIT is the source kit of benchmarks/gpu/kit.sh (Ollama's server, its engine's
# CMake project, llama.cpp with Ollama's patch); without one it is made here,
# which needs Go and the network. Steps, each skipped once done, so that a run
# cut short goes on where it stopped:
#   build    llama-server and llama-quantize with the CUDA backend
#            (CUDA_ARCHITECTURES, default native), as Ollama's Linux install
#            lays them out: PREFIX/bin/ollama, PREFIX/lib/ollama/
#   models   two random-weight llama models of 13.5 and 7.0 GB in F16 and a
#            tiny one, written with llama.cpp's own gguf package and imported
#            by the real `ollama create` into a disk store (20 GB, 43 GB at the
#            peak: a GGUF, its upload and create's checked copy)
#   bench    the tables (REPEAT, default 3), what the plan said against what
#            Ollama did, and the bandwidths, into OUT (default
#            benchmarks/gpu/results): loads-gpu.md, its raw samples
#            (loads-gpu.json) and the server logs
# STEPS=build,models,bench chooses steps; WORKDIR (default
# /var/tmp/ollama-ramdisk-gpu) holds the build, the disk store and the RAM disks'
# mount points. On the H200: 3.6 to 4.6 minutes of build on 16 cores, 2.3 to 3.1 of models,
# 9.8 of bench.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=${WORKDIR:-/var/tmp/ollama-ramdisk-gpu}
OUT=${OUT:-$ROOT/benchmarks/gpu/results}
STEPS=${STEPS:-build,models,bench}
REPEAT=${REPEAT:-3}
KIT=${1:-}
PREFIX=$WORK/prefix
STORE=$WORK/disk/models

log() { printf 'gpu: %s (%ss)\n' "$*" "$SECONDS" >&2; }
wants() { [[ ,$STEPS, == *,$1,* ]]; }

[[ $(id -u) -eq 0 ]] || { log "needs root (tmpfs mounts, dropping the page cache)"; exit 1; }
command -v nvidia-smi >/dev/null || { log "no nvidia-smi: is the NVIDIA driver installed?"; exit 1; }
mkdir -p "$WORK" "$OUT"

if [[ ! -f $WORK/kit/PIN ]]; then
    if [[ -z $KIT ]]; then
        KIT=$WORK/kit.tar.gz
        log "making the source kit (benchmarks/gpu/kit.sh)"
        "$ROOT/benchmarks/gpu/kit.sh" "$KIT"
    fi
    log "unpacking $KIT"
    tar -xzf "$KIT" -C "$WORK"
fi
LLAMA=$WORK/kit/llama.cpp
export PYTHONPATH=$LLAMA/gguf-py${PYTHONPATH:+:$PYTHONPATH}

if wants build && [[ ! -f $PREFIX/.complete ]]; then
    generator=()
    command -v ninja >/dev/null && generator=(-G Ninja)
    log "configuring the engine (CUDA architectures ${CUDA_ARCHITECTURES:-native})"
    cmake -S "$WORK/kit/ollama-src/llama/server" -B "$WORK/build" "${generator[@]}" \
        -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
        -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-native}" \
        -DGGML_NATIVE=ON -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF \
        -DFETCHCONTENT_SOURCE_DIR_LLAMA_CPP="$LLAMA" -DOLLAMA_LLAMA_CPP_SKIP_COMPAT_PATCH=ON \
        -DCMAKE_INSTALL_PREFIX="$PREFIX" >"$WORK/configure.log" 2>&1 ||
        { tail -n 40 "$WORK/configure.log" >&2; exit 1; }
    log "building llama-server and llama-quantize ($(nproc) jobs)"
    cmake --build "$WORK/build" --target llama-server llama-quantize -j "$(nproc)" \
        >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log" >&2; exit 1; }
    cmake --install "$WORK/build" --component llama-server >"$WORK/install.log"
    # The component leaves the CUDA backend's library out (seen with CUDA 13):
    # every ggml library the build made goes beside the engine.
    find "$WORK/build" -name 'libggml-*.so*' -exec cp -P {} "$PREFIX/lib/ollama/" \;
    mkdir -p "$PREFIX/bin"
    cp "$WORK/kit/ollama/bin/ollama" "$PREFIX/bin/ollama"
    if ldd "$PREFIX/lib/ollama/llama-server" | grep 'not found'; then
        log "the engine misses libraries (above)"
        exit 1
    fi
    nvcc -O2 -o "$PREFIX/h2d" "$ROOT/benchmarks/gpu/h2d.cu"
    touch "$PREFIX/.complete"
    log "engine built: $("$PREFIX/lib/ollama/llama-server" --version 2>&1 | tail -n 1)"
fi

if wants models; then
    log "models: the gpu set into $STORE"
    python3 "$ROOT/scripts/make-test-models.py" --ollama "$PREFIX" --set gpu --into "$STORE" \
        --vocab "$LLAMA/models/ggml-vocab-llama-spm.gguf" >/dev/null
    log "models ready: $(du -sh "$STORE" | cut -f1)"
fi

if wants bench; then
    log "bench: benchmarks/loads.py --gpu --repeat $REPEAT"
    set +e
    OLLAMA_RAMDISK_H2D=$PREFIX/h2d python3 "$ROOT/benchmarks/loads.py" --gpu \
        --prefix "$PREFIX" --disk-store "$STORE" --models bench-gpu-a:7b bench-gpu-b:4b \
        --floor bench-gpu-floor:tiny --repeat "$REPEAT" --workdir "$WORK/bench" \
        --output "$OUT/loads-gpu.md"
    status=$?
    set -e
    for file in serve.log checks.log; do
        [[ -f $WORK/bench/$file ]] && tail -c 4000000 "$WORK/bench/$file" >"$OUT/$file"
    done
    log "bench ended with status $status; results in $OUT"
    exit "$status"
fi
