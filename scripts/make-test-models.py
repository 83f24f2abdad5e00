#!/usr/bin/env python3
"""Make the test models: GGUF files with random weights, imported by the real Ollama.

No model can be downloaded here, so the tests make their own: llama-architecture
GGUF files (written with the `gguf` package) whose tokenizer is the real one
of llama.cpp's `models/ggml-vocab-llama-spm.gguf`, imported with the real
`ollama create` (a Modelfile with template, parameters and license) into a
disk store, and aliased with `ollama cp`. Every manifest, config and blob of
that store is Ollama's own. Families share blobs as real ones do: the same
weights under two tags, one license for several models, a model under
another host.

The server runs here, on the loopback address, as a child of this script, for
as long as the imports take. The store is written as a tar archive (owner
`ollama`), ready to unpack into a test instance's disk store; the GGUF files
stay beside it for tests that create models themselves.

Usage: make-test-models.py --ollama PREFIX --vocab GGUF --out DIR [--set small|large|bench]
Prints the archive's path. Reuses the archive when the recipe is unchanged.
       make-test-models.py --ollama PREFIX --vocab GGUF --into STORE --set gpu
Creates the set in STORE itself (a GPU server's 22 GB are not archived).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

# Bump when the models are made differently: the archives are made again.
REVISION = 1


@dataclass(frozen=True)
class Shape:
    """A llama model's dimensions; the weights are random, the shape is real."""

    embedding: int
    blocks: int
    heads: int
    feed_forward: int
    context: int = 512


SMALL = Shape(embedding=32, blocks=2, heads=4, feed_forward=64)  # about 4 MiB in F16
# About 1 MiB: made inside the RAM disks by the tests, which leave little room.
TINY = Shape(embedding=8, blocks=1, heads=2, feed_forward=16)
# About 1.07 GB in F16: the size of a small real model, for loads and refusals.
LARGE = Shape(embedding=2048, blocks=8, heads=16, feed_forward=5632)

TEMPLATES = {
    "llama3": (
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>"
        "{{ end }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
    ),
    "mistral": "[INST] {{ if .System }}{{ .System }} {{ end }}{{ .Prompt }} [/INST]",
    "qwen": (
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"
    ),
    "phi3": "<|user|>\n{{ .Prompt }}<|end|>\n<|assistant|>\n{{ .Response }}<|end|>",
    "gemma": "<start_of_turn>user\n{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n",
    "zephyr": "<|user|>\n{{ .Prompt }}</s>\n<|assistant|>\n",
    "plain": "{{ .Prompt }}",
}

LICENSES = {
    "llama3.1": "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\nRelease Date: July 23, 2024\n",
    "llama3.2": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nRelease Date: September 25, 2024\n",
    "apache": "Apache License\nVersion 2.0, January 2004\nhttp://www.apache.org/licenses/\n",
    "mit": "MIT License\n\nPermission is hereby granted, free of charge, to any person\n",
    "gemma": "Gemma Terms of Use\n\nLast modified: February 21, 2024\n",
}


@dataclass(frozen=True)
class Model:
    """One test model: its weights (equal names share a blob), template, license."""

    name: str
    weights: str
    template: str
    license: str
    params: dict[str, object] = field(default_factory=dict)
    shape: Shape = SMALL
    # Another name for the same manifest, made with `ollama cp`.
    alias_of: str | None = None


SMALL_SET = [
    Model("llama3.1:8b", "llama3.1-8b", "llama3", "llama3.1", {"stop": ["<|eot_id|>"]}),
    Model("llama3.1:latest", "", "", "", alias_of="llama3.1:8b"),
    Model("llama3.2:3b", "llama3.2-3b", "llama3", "llama3.2", {"stop": ["<|eot_id|>"]}),
    Model("mistral:7b", "mistral-7b", "mistral", "apache", {"stop": ["[INST]"]}),
    Model("qwen2.5:7b", "qwen2.5-7b", "qwen", "apache", {"stop": ["<|im_end|>"]}),
    Model("nomic-embed-text:latest", "nomic-embed", "plain", "apache", {"num_ctx": 512}),
    # Another registry; the same weights as llama3.2:3b, as a re-upload would have.
    Model(
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "llama3.2-3b",
        "llama3",
        "llama3.2",
        {"temperature": 0.6},
    ),
    Model("phi3:mini", "phi3-mini", "phi3", "mit", {"stop": ["<|end|>"]}),
    Model("gemma2:2b", "gemma2-2b", "gemma", "gemma", {"stop": ["<end_of_turn>"]}),
]
LARGE_SET = [Model("llama3.1:405b", "llama3.1-405b", "llama3", "llama3.1", shape=LARGE)]
# Made by the tests themselves inside an instance (`ollama create` into RAM).
EXTRA_GGUFS = {"tinyllama": TINY}

# Two models of the same size for the load and switch benchmarks.
BENCH_SET = [
    Model("bench-a:1b", "bench-a", "llama3", "apache", shape=LARGE),
    Model("bench-b:1b", "bench-b", "llama3", "apache", shape=LARGE),
]
# A GPU server's models (benchmarks/gpu): a 7B-class model in F16, 13.5 GB, as
# the larger of a switch, and one of half its blocks, 7.0 GB; the tiny one is the
# floor, what a load costs whatever the store (the engine's and CUDA's start).
SEVEN_B = Shape(embedding=4096, blocks=32, heads=32, feed_forward=11008, context=2048)
GPU_SET = [
    Model("bench-gpu-a:7b", "bench-gpu-a", "llama3", "apache", shape=SEVEN_B),
    Model("bench-gpu-b:4b", "bench-gpu-b", "llama3", "apache",
          shape=Shape(embedding=4096, blocks=16, heads=32, feed_forward=11008, context=2048)),
    Model("bench-gpu-floor:tiny", "bench-gpu-floor", "llama3", "apache", shape=SMALL),
]  # fmt: skip

SETS = {"small": SMALL_SET, "large": LARGE_SET, "bench": BENCH_SET, "gpu": GPU_SET}
BYTE_TOKENS_HIGH = [f"<0x{value:02X}>" for value in range(0x80, 0x100)]
UNUSED = 5  # llama.cpp's token type for a token never produced


def copy_tokenizer(writer: gguf.GGUFWriter, vocab: Path) -> int:
    """The real tokenizer's keys; bytes 0x80-0xFF marked unused, so that random
    weights still produce valid UTF-8 (llama-server refuses anything else)."""
    reader = gguf.GGUFReader(vocab)
    tokens = [bytes(reader.fields["tokenizer.ggml.tokens"].parts[i]).decode("utf-8")
              for i in reader.fields["tokenizer.ggml.tokens"].data]  # fmt: skip
    scores = [float(reader.fields["tokenizer.ggml.scores"].parts[i][0])
              for i in reader.fields["tokenizer.ggml.scores"].data]  # fmt: skip
    types = [int(reader.fields["tokenizer.ggml.token_type"].parts[i][0])
             for i in reader.fields["tokenizer.ggml.token_type"].data]  # fmt: skip
    high = set(BYTE_TOKENS_HIGH)
    types = [UNUSED if token in high else kind for token, kind in zip(tokens, types)]
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)

    def scalar(key: str) -> int:
        return int(reader.fields[key].parts[-1][0])

    writer.add_bos_token_id(scalar("tokenizer.ggml.bos_token_id"))
    writer.add_eos_token_id(scalar("tokenizer.ggml.eos_token_id"))
    writer.add_unk_token_id(scalar("tokenizer.ggml.unknown_token_id"))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    return len(tokens)


def write_gguf(path: Path, seed: str, shape: Shape, vocab: Path) -> None:
    """A llama GGUF with random F16 weights (finite, small: a sane model)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    # Neutral: llama.cpp applies quirks by name (a "phi3" in it expects Phi-3's tokens).
    writer.add_name(f"random weights {hashlib.sha256(seed.encode()).hexdigest()[:12]}")
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.embedding)
    writer.add_block_count(shape.blocks)
    writer.add_feed_forward_length(shape.feed_forward)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.heads)
    writer.add_rope_dimension_count(shape.embedding // shape.heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    n_vocab = copy_tokenizer(writer, vocab)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    e, f = shape.embedding, shape.feed_forward

    def tensor(name: str, *dims: int) -> None:
        # Random F16 bit patterns of magnitude 2^-7..2^-6, either sign: finite,
        # small, and made at memory speed (a normal draw took minutes per 14 GB).
        count = int(np.prod(dims))
        bits = rng.bit_generator.random_raw(count // 4 + 1).view(np.uint16)[:count]
        data = (bits & 0x83FF) | 0x2000
        writer.add_tensor(name, data.reshape(dims).view(np.float16))

    def ones(name: str, size: int) -> None:
        writer.add_tensor(name, np.ones(size, dtype=np.float32))

    tensor("token_embd.weight", n_vocab, e)
    ones("output_norm.weight", e)
    tensor("output.weight", n_vocab, e)
    for block in range(shape.blocks):
        ones(f"blk.{block}.attn_norm.weight", e)
        for part in ("q", "k", "v", "output"):
            tensor(f"blk.{block}.attn_{part}.weight", e, e)
        ones(f"blk.{block}.ffn_norm.weight", e)
        tensor(f"blk.{block}.ffn_gate.weight", f, e)
        tensor(f"blk.{block}.ffn_up.weight", f, e)
        tensor(f"blk.{block}.ffn_down.weight", e, f)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# Random weights seldom say end-of-text: a bound keeps `ollama run` from
# generating until the context is shifted for ever.
DEFAULT_PARAMS: dict[str, object] = {"num_predict": 48}


def modelfile(model: Model, gguf_path: Path) -> str:
    lines = [f"FROM {gguf_path}", f'TEMPLATE """{TEMPLATES[model.template]}"""']
    for key, value in {**DEFAULT_PARAMS, **model.params}.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {json.dumps(item) if isinstance(item, str) else item}")
    lines.append(f'LICENSE """{LICENSES[model.license]}"""')
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def ollama_server(prefix: Path, store: Path, log: Path) -> Iterator[dict[str, str]]:
    """The real server on a loopback port, its store at ``store``, until the block ends."""
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{free_port()}",
        "OLLAMA_MODELS": str(store),
        "OLLAMA_NOPRUNE": "1",
        "HOME": str(store.parent),
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(prefix / "bin" / "ollama"), "serve"], env=env, stdout=output, stderr=output
        )
    try:
        url = f"http://{env['OLLAMA_HOST']}/api/version"
        for _ in range(300):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=1).read()
                break
            if server.poll() is not None:
                raise SystemExit(f"make-test-models: ollama serve exited; see {log}")
            time.sleep(0.1)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def ollama(prefix: Path, env: dict[str, str], *argv: str) -> None:
    done = subprocess.run(
        [str(prefix / "bin" / "ollama"), *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"make-test-models: ollama {' '.join(argv)} failed: {done.stderr[-2000:]}")


def recipe(models: list[Model], prefix: Path, vocab: Path) -> str:
    """What the archive depends on: this script, the models, the server, the vocabulary."""
    digest = hashlib.sha256()
    digest.update(Path(__file__).read_bytes())
    digest.update(repr(models).encode())
    digest.update((prefix / "bin" / "ollama").read_bytes()[: 1 << 20])
    digest.update(vocab.read_bytes())
    return digest.hexdigest()[:16]


def make_into(which: str, prefix: Path, vocab: Path, store: Path) -> Path:
    """The set created straight into ``store`` (no archive): for sets too large
    to hold twice, such as a GPU server's. A model already there is kept; each
    GGUF is removed once imported, so the disk holds one spare copy at most."""
    store.mkdir(parents=True, exist_ok=True)
    ggufs = store.parent / f".{store.name}-gguf"
    ggufs.mkdir(exist_ok=True)
    with ollama_server(prefix, store, store.parent / f"{store.name}-create.log") as env:
        for model in SETS[which]:
            name, _, tag = model.name.partition(":")
            if (store / "manifests/registry.ollama.ai/library" / name / tag).exists():
                continue
            if model.alias_of:
                ollama(prefix, env, "cp", model.alias_of, model.name)
                continue
            weights = ggufs / f"{model.weights}.gguf"
            write_gguf(weights, model.weights, model.shape, vocab)
            recipe_file = ggufs / "Modelfile"
            recipe_file.write_text(modelfile(model, weights))
            ollama(prefix, env, "create", model.name, "-f", str(recipe_file))
            weights.unlink()
            _keep_referenced(store)  # before the next model: the disk holds one spare copy
    shutil.rmtree(ggufs)
    return store


def make(which: str, prefix: Path, vocab: Path, out: Path) -> Path:
    models = SETS[which]
    archive = out / f"store-{which}-{recipe(models, prefix, vocab)}.tar"
    if archive.exists():
        return archive
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".work-") as work_dir:
        work = Path(work_dir)
        ggufs = work / "gguf"
        ggufs.mkdir()
        store = work / "models"
        with ollama_server(prefix, store, work / "serve.log") as env:
            for model in models:
                if model.alias_of:
                    ollama(prefix, env, "cp", model.alias_of, model.name)
                    continue
                weights = ggufs / f"{model.weights}.gguf"
                if not weights.exists():
                    write_gguf(weights, model.weights, model.shape, vocab)
                recipe_file = work / "Modelfile"
                recipe_file.write_text(modelfile(model, weights))
                ollama(prefix, env, "create", model.name, "-f", str(recipe_file))
        if which == "small":
            for name, shape in EXTRA_GGUFS.items():
                write_gguf(out / f"{name}.gguf", name, shape, vocab)
        held = _keep_referenced(store)
        record = archive.with_suffix(".json")
        record.write_text(json.dumps(held, indent=2, sort_keys=True) + "\n")
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(store, arcname=".", filter=_as_ollama)
        partial.rename(archive)
    for stale in out.glob(f"store-{which}-*"):
        if stale.stem != archive.stem:
            stale.unlink()
    return archive


def _keep_referenced(store: Path) -> dict[str, dict[str, object]]:
    """Remove the blobs no manifest references (create leaves its upload behind
    when the checked copy differs, which Ollama's own prune would remove);
    the store's record."""
    held = _record(store)
    referenced = {digest.replace(":", "-") for entry in held.values()
                  for digest in entry["blobs"]}  # type: ignore[union-attr]  # fmt: skip
    for blob in (store / "blobs").iterdir():
        if blob.name not in referenced:
            blob.unlink()
    return held


def _record(store: Path) -> dict[str, dict[str, object]]:
    """What the store holds, for the tests: model -> manifest, its hash, blobs, bytes."""
    record: dict[str, dict[str, object]] = {}
    for path in sorted((store / "manifests").glob("*/*/*/*")):
        host, namespace, model, tag = path.relative_to(store / "manifests").parts
        document = json.loads(path.read_bytes())
        layers = [document["config"], *document["layers"]]
        name = (
            f"{model}:{tag}"
            if (host, namespace) == ("registry.ollama.ai", "library")
            else (f"{host}/{namespace}/{model}:{tag}")
        )
        record[name] = {
            "manifest": str(path.relative_to(store)),
            "manifest_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "blobs": [layer["digest"] for layer in layers],
            "bytes": sum(int(layer["size"]) for layer in layers),
        }
    return record


def _as_ollama(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uname = info.gname = "ollama"
    info.uid = info.gid = 0  # names win when the instance unpacks as root
    return info


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ollama", type=Path, required=True, help="the install prefix")
    parser.add_argument("--vocab", type=Path, required=True, help="ggml-vocab-llama-spm.gguf")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="the directory of the archives")
    where.add_argument("--into", type=Path, help="a store to create the set in, no archive")
    parser.add_argument("--set", choices=sorted(SETS), default="small")
    args = parser.parse_args(argv)
    if args.into is not None:
        print(make_into(args.set, args.ollama, args.vocab, args.into))
        return 0
    if shutil.which("tar") is None:
        raise SystemExit("make-test-models: tar is needed")
    print(make(args.set, args.ollama, args.vocab, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
