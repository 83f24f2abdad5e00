"""Synthetic Ollama stores for tests: real manifests, blobs named by their sha256.

A store is built from layers (``Layer``): literal content (``text``),
deterministic pseudo-random weights of a given size (``weights``, held in
memory; ``streamed``, generated chunk by chunk as it is hashed and written, for
the benchmarks' gigabyte blobs), or a sparse file (``sparse``) whose digest is
made up, for sizing tests that need huge blobs cheaply (only sizes are checked
there, never hashes). This is the one generator of synthetic stores: the
benchmarks (benchmarks/synth.py) lay theirs out and build them with it. Models that list
the same layer share its blob, as they do in a real store.

    built = make_store(tmp_path / "store", {
        "llama3.2:3b": [weights(300_000, "llama3.2"), LICENSE_LLAMA, TEMPLATE_CHAT],
        "hf.co/acme/coder:Q4_K_M": [b"literal weights", LICENSE_LLAMA],
    })
    built.manifest_path("llama3.2:3b"); built.blob_path(layer); built.bytes_of("llama3.2:3b")

``fleet_store(root)`` writes a ready-made realistic store (see FLEET).

Paths are derived here from the name independently of ``ollama_ramdisk.names``,
so that the tests of the core do not check the core against itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Union

from ollama_ramdisk.store import Store
from ollama_ramdisk.tmpfs_options import local_huge_setting

MODEL = "application/vnd.ollama.image.model"
LICENSE = "application/vnd.ollama.image.license"
TEMPLATE = "application/vnd.ollama.image.template"
PARAMS = "application/vnd.ollama.image.params"
PROJECTOR = "application/vnd.ollama.image.projector"
SYSTEM = "application/vnd.ollama.image.system"
CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


# Streamed layers are generated and written this much at a time.
STREAM_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Layer:
    """One blob: literal ``content``, ``stream_size`` pseudo-random bytes seeded
    by ``label``, or ``sparse_size`` zero bytes under a made-up digest."""

    media_type: str = MODEL
    content: bytes = b""
    sparse_size: int | None = None
    label: str = ""
    stream_size: int | None = None

    @property
    def size(self) -> int:
        if self.stream_size is not None:
            return self.stream_size
        return len(self.content) if self.sparse_size is None else self.sparse_size

    def chunks(self) -> Iterator[bytes]:
        """The content, STREAM_CHUNK bytes at a time (streamed layers generate it)."""
        if self.stream_size is None:
            yield self.content
            return
        generator = random.Random(self.label)  # noqa: S311 - test data
        remaining = self.stream_size
        while remaining > 0:
            step = min(STREAM_CHUNK, remaining)
            yield generator.randbytes(step)
            remaining -= step

    @cached_property
    def hex(self) -> str:
        # Cached: a large layer would otherwise be hashed again on every use.
        if self.stream_size is not None:
            digest = hashlib.sha256()
            for chunk in self.chunks():
                digest.update(chunk)
            return digest.hexdigest()
        if self.sparse_size is None:
            return hashlib.sha256(self.content).hexdigest()
        # Hashing gigabytes of zeros would make sizing tests slow; the name only
        # has to be a valid, distinct digest.
        return hashlib.sha256(f"sparse:{self.label}:{self.sparse_size}".encode()).hexdigest()

    @property
    def digest(self) -> str:
        return f"sha256:{self.hex}"

    @property
    def filename(self) -> str:
        return f"sha256-{self.hex}"

    @property
    def relpath(self) -> str:
        """``blobs/sha256-<hex>``, the form the CLI reports blobs in."""
        return f"blobs/{self.filename}"

    @property
    def is_sparse(self) -> bool:
        return self.sparse_size is not None

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def write(self, path: Path) -> None:
        if self.stream_size is not None:
            with open(path, "wb") as handle:
                for chunk in self.chunks():
                    handle.write(chunk)
            return
        if self.sparse_size is None:
            path.write_bytes(self.content)
            return
        with open(path, "wb") as handle:
            handle.truncate(self.sparse_size)


def text(content: str | bytes, media_type: str = MODEL) -> Layer:
    """A layer holding exactly ``content``."""
    data = content.encode() if isinstance(content, str) else content
    return Layer(media_type=media_type, content=data)


def weights(size: int, seed: str, media_type: str = MODEL) -> Layer:
    """``size`` pseudo-random bytes, the same for the same seed."""
    return Layer(media_type=media_type, content=random.Random(seed).randbytes(size))  # noqa: S311 - test data


def streamed(size: int, seed: str, media_type: str = MODEL) -> Layer:
    """``size`` pseudo-random bytes, the same for the same seed, never all in memory."""
    return Layer(media_type=media_type, stream_size=size, label=seed)


def sparse(size: int, label: str, media_type: str = MODEL) -> Layer:
    """A sparse file of ``size`` bytes: cheap at any size, digest not its content's."""
    return Layer(media_type=media_type, sparse_size=size, label=label)


def config_for(name: str, family: str = "llama") -> Layer:
    """A model's config blob, distinct per model as Ollama's are."""
    document = {
        "model_format": "gguf",
        "model_family": family,
        "model_families": [family],
        "model_type": name,
        "file_type": "Q4_K_M",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return Layer(media_type=CONFIG, content=json.dumps(document, separators=(",", ":")).encode())


LICENSE_LLAMA = text("LLAMA 3.2 COMMUNITY LICENSE AGREEMENT (synthetic)\n", LICENSE)
LICENSE_APACHE = text("Apache License, Version 2.0 (synthetic)\n", LICENSE)
TEMPLATE_CHAT = text(
    "{{- range .Messages }}<|{{ .Role }}|>{{ .Content }}{{ end }}<|assistant|>", TEMPLATE
)
PARAMS_STOP = text('{"stop":["<|eot_id|>"],"temperature":0.6}', PARAMS)

# The fixtures' types (conftest.py): tmpfs(size) -> mount point; store_factory(...) -> store.
MountTmpfs = Callable[..., Path]
StoreFactory = Callable[..., "SyntheticStore"]

# Shorthand accepted wherever a layer is: see as_layer.
LayerSpec = Union[Layer, bytes, int, tuple[str, Union[bytes, int]]]


def split_name(name: str) -> tuple[str, str, str, str]:
    """host, namespace, model, tag of a valid name, with Ollama's defaults."""
    rest, tag = name, "latest"
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, tag = rest.rpartition(":")
    if "://" in rest:
        rest = rest.split("://", 1)[1]
    parts = rest.split("/")
    if len(parts) == 1:
        return "registry.ollama.ai", "library", parts[0], tag
    if len(parts) == 2:
        return "registry.ollama.ai", parts[0], parts[1], tag
    host, namespace, model = parts
    return host, namespace, model, tag


def qualified(name: str) -> str:
    host, namespace, model, tag = split_name(name)
    return f"{host}/{namespace}/{model}:{tag}"


def manifest_relpath(name: str) -> str:
    return "manifests/" + "/".join(split_name(name))


@dataclass(frozen=True)
class ModelSpec:
    """A model as written: its name, config blob and layers."""

    name: str
    config: Layer
    layers: tuple[Layer, ...]

    @property
    def qualified(self) -> str:
        return qualified(self.name)

    @property
    def manifest_relpath(self) -> str:
        return manifest_relpath(self.name)

    @property
    def blobs(self) -> tuple[Layer, ...]:
        return (self.config, *self.layers)

    def manifest_bytes(self) -> bytes:
        document = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": self.config.descriptor(),
            "layers": [layer.descriptor() for layer in self.layers],
        }
        return json.dumps(document, separators=(",", ":")).encode()


def as_layer(spec: LayerSpec, seed: str) -> Layer:
    """A Layer from shorthand: bytes (content), int (random weights of that size),
    or (media_type, bytes | int)."""
    if isinstance(spec, Layer):
        return spec
    media_type = MODEL
    if isinstance(spec, tuple):
        media_type, spec = spec
    if isinstance(spec, bytes):
        return text(spec, media_type)
    return weights(spec, seed, media_type)


@dataclass
class SyntheticStore:
    """A store written under ``root``, and what was written into it."""

    root: Path
    models: dict[str, ModelSpec] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return Store(self.root)

    def add(
        self,
        name: str,
        layers: Iterable[LayerSpec],
        config: Layer | None = None,
    ) -> ModelSpec:
        """Write a model: its blobs (each once), then its manifest."""
        built = tuple(as_layer(spec, f"{name}#{index}") for index, spec in enumerate(layers))
        spec = ModelSpec(name=name, config=config or config_for(name), layers=built)
        blobs = self.root / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        for layer in spec.blobs:
            path = blobs / layer.filename
            if not path.exists():
                layer.write(path)
        self.write_manifest(name, spec.manifest_bytes())
        self.models[name] = spec
        return spec

    def write_manifest(self, name: str, content: bytes | str | Mapping[str, Any]) -> Path:
        """Write any manifest content under the name's path (for malformed ones too)."""
        if isinstance(content, Mapping):
            content = json.dumps(content)
        data = content.encode() if isinstance(content, str) else content
        path = self.root / manifest_relpath(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def manifest_path(self, name: str) -> Path:
        return self.root / manifest_relpath(name)

    def blob_path(self, layer: Layer) -> Path:
        return self.root / layer.relpath

    def distinct_blobs(self, *names: str) -> dict[str, Layer]:
        """The blobs of ``names`` (all models if none), each once, by hex."""
        chosen = names or tuple(self.models)
        return {layer.hex: layer for name in chosen for layer in self.models[name].blobs}

    def bytes_of(self, *names: str) -> int:
        """What a plan counts: distinct blobs plus each model's manifest."""
        blobs = sum(layer.size for layer in self.distinct_blobs(*names).values())
        return blobs + sum(len(self.models[name].manifest_bytes()) for name in names)

    def corrupt(self, layer: Layer) -> None:
        """Flip the first byte of a blob in place (same size, wrong content)."""
        path = self.blob_path(layer)
        with open(path, "r+b") as handle:
            first = handle.read(1)
            handle.seek(0)
            handle.write(bytes([first[0] ^ 0xFF]) if first else b"\0")
            handle.flush()
            os.fsync(handle.fileno())


def make_store(
    root: Path, models: Mapping[str, Sequence[LayerSpec]] | None = None
) -> SyntheticStore:
    """Write a store holding ``models`` (name -> layers); shared layers written once."""
    built = SyntheticStore(root=root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "blobs").mkdir(exist_ok=True)
    (root / "manifests").mkdir(exist_ok=True)
    for name, layers in (models or {}).items():
        built.add(name, layers)
    return built


# Weights shared by two tags, as `ollama pull llama3.2` and `llama3.2:3b` share them.
LLAMA_WEIGHTS = weights(300_000, "llama3.2:3b weights")
LLAMA_CONFIG = config_for("llama3.2:3b")

FLEET: dict[str, tuple[Layer, ...]] = {
    "llama3.2:3b": (LLAMA_WEIGHTS, LICENSE_LLAMA, TEMPLATE_CHAT, PARAMS_STOP),
    "llama3.2:latest": (LLAMA_WEIGHTS, LICENSE_LLAMA, TEMPLATE_CHAT, PARAMS_STOP),
    "llama3.2:1b": (weights(120_000, "llama3.2:1b"), LICENSE_LLAMA, TEMPLATE_CHAT, PARAMS_STOP),
    "qwen2.5-coder:7b": (weights(250_000, "qwen2.5-coder:7b"), LICENSE_APACHE, TEMPLATE_CHAT),
    "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M": (
        weights(90_000, "hf bartowski"),
        TEMPLATE_CHAT,
    ),
    "acme/embedder:v1": (weights(40_000, "acme embedder"), LICENSE_APACHE),
}


# Two tags of one model are one manifest content under two paths: same config too.
FLEET_CONFIGS = {"llama3.2:3b": LLAMA_CONFIG, "llama3.2:latest": LLAMA_CONFIG}


def fleet_store(root: Path) -> SyntheticStore:
    """A realistic store: six models, two tags sharing weights, shared licenses and
    templates, an hf.co model and a namespaced one."""
    built = make_store(root)
    for name, layers in FLEET.items():
        built.add(name, layers, config=FLEET_CONFIGS.get(name))
    return built


# Manifests a store must refuse: content, and the reason the error gives.
MALFORMED = {
    "bad JSON": (b'{"config": {', "not valid JSON"),
    "missing keys": (b'{"config": {"digest": "sha256:' + b"a" * 64 + b'"}, "layers": []}',
                     "config lacks mediaType, size"),
    "path as digest": (
        json.dumps({"config": {"mediaType": "x", "digest": "sha256:../../x", "size": 1},
                    "layers": []}).encode(),
        "'sha256:../../x' is not sha256:<64 hex digits>",
    ),
    "sha512 digest": (
        json.dumps({"config": {"mediaType": "x", "digest": "sha512:" + "a" * 128, "size": 1},
                    "layers": []}).encode(),
        "is not sha256:<64 hex digits>",
    ),
}  # fmt: skip


def tmpfs_has_huge_pages() -> bool:
    """Whether a tmpfs mounted huge=within_size gets 2 MiB pages here (the role's rule)."""
    return local_huge_setting() == "within_size"


# Maps a file, touches every page as a loading engine does, and prints how much of
# the mapping the kernel gave 2 MiB entries (smaps ShmemPmdMapped, in KiB).
_PMD_PROBE = (
    "import mmap, re, sys\n"
    "f = open(sys.argv[1], 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
    "sum(m[i] for i in range(0, len(m), 4096))\n"
    "smaps = open('/proc/self/smaps').read()\n"
    "entry = smaps[smaps.index(sys.argv[1]):]\n"
    "print(re.search(r'ShmemPmdMapped:\\s+(\\d+)', entry).group(1))\n"
)


def huge_page_bytes(path: Path) -> int:
    """Bytes of the tmpfs file ``path`` that its filesystem holds in 2 MiB pages.

    Measured in a process of its own, so that it says what any mapping of the file
    can get: where memory is too fragmented for a huge page, tmpfs falls back to
    4 KiB pages for that part of the file, and no engine maps it with 2 MiB.
    """
    done = subprocess.run(
        [sys.executable, "-c", _PMD_PROBE, str(path)], capture_output=True, text=True, check=True
    )
    return int(done.stdout) * 1024


def compact_memory() -> None:
    """Ask the kernel to defragment free memory (root), so that a tmpfs filled next
    finds 2 MiB pages even on a busy machine; best effort."""
    with contextlib.suppress(OSError):
        Path("/proc/sys/vm/compact_memory").write_text("1\n")
