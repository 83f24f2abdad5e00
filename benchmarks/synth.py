"""Synthetic Ollama stores for the benchmarks, built once and cached on disk.

Two shapes of store:

- ``fleet_layout(total)``: a handful of models filling about ``total`` bytes,
  as a GPU server holds them: one big weights blob (half the total, 1 GiB at the
  default 2 GiB), smaller ones halving in size, a vision projector, two tags of
  one model sharing everything, and licenses, templates and params of a few
  hundred bytes to a few KiB shared across models.
- ``many_layout(models)``: a hundred small models and three hundred blobs, for
  timing a populate that has nothing to do (it should only stat).

Blob content is pseudo-random (incompressible, like quantised weights) and
deterministic for a given layout; every blob is named by the sha256 of what
was written. A built store is cached under ``workdir`` keyed by its layout, so
a second benchmark run starts at once; the build goes into a temporary
directory renamed into place when complete, so an interrupted build is never
mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Bump when the generated content changes, so that cached stores are rebuilt.
GENERATOR_VERSION = 1
CHUNK = 4 * 1024 * 1024
KIB = 1024
MIB = 1024 * KIB

MODEL = "application/vnd.ollama.image.model"
PROJECTOR = "application/vnd.ollama.image.projector"
LICENSE = "application/vnd.ollama.image.license"
TEMPLATE = "application/vnd.ollama.image.template"
PARAMS = "application/vnd.ollama.image.params"
SYSTEM = "application/vnd.ollama.image.system"
CONFIG = "application/vnd.docker.container.image.v1+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

# Media types whose content is text (written as repeated words, not random bytes).
TEXT_TYPES = frozenset({LICENSE, TEMPLATE, PARAMS, SYSTEM})


@dataclass(frozen=True)
class BlobSpec:
    """One blob to generate: ``label`` seeds its content, so equal labels are one blob."""

    label: str
    size: int
    media_type: str = MODEL


@dataclass(frozen=True)
class ModelSpec:
    """A model: its name and layers; its config blob is derived from ``config_label``."""

    name: str
    layers: tuple[BlobSpec, ...]
    config_label: str = ""

    @property
    def config(self) -> BlobSpec:
        # Two tags of one model share their config as well as their layers.
        return BlobSpec(f"config:{self.config_label or self.name}", 0, CONFIG)


@dataclass
class BuiltStore:
    """A store on disk and what it holds."""

    root: Path
    models: list[str]
    # blobs/sha256-<hex> -> size, every distinct blob once.
    blobs: dict[str, int] = field(default_factory=dict)
    # manifests/<host>/<namespace>/<model>/<tag> -> size.
    manifests: dict[str, int] = field(default_factory=dict)

    @property
    def blob_bytes(self) -> int:
        return sum(self.blobs.values())

    @property
    def total_bytes(self) -> int:
        return self.blob_bytes + sum(self.manifests.values())

    def blob_paths(self, root: Path | None = None) -> list[Path]:
        """The blob files under ``root`` (this store's by default), largest first."""
        base = root or self.root
        ordered = sorted(self.blobs, key=lambda rel: (-self.blobs[rel], rel))
        return [base / rel for rel in ordered]

    def to_json(self) -> dict[str, object]:
        return {"models": self.models, "blobs": self.blobs, "manifests": self.manifests}


def fleet_layout(total: int) -> list[ModelSpec]:
    """Models filling about ``total`` bytes, blobs from a few hundred bytes to total/2."""
    weights = [BlobSpec(f"weights:{index}", total >> (index + 1)) for index in range(5)]
    projector = BlobSpec("projector:llava", total >> 6, PROJECTOR)
    license_llama = BlobSpec("license:llama", 12 * KIB, LICENSE)
    license_apache = BlobSpec("license:apache", 11 * KIB, LICENSE)
    template_chat = BlobSpec("template:chat", 1536, TEMPLATE)
    template_instruct = BlobSpec("template:instruct", 900, TEMPLATE)
    params = BlobSpec("params:stop", 120, PARAMS)
    system = BlobSpec("system:assistant", 3 * KIB, SYSTEM)
    embedder = BlobSpec("weights:embedder", max(64 * KIB, total >> 12))
    llama = (weights[0], license_llama, template_chat, params)
    return [
        ModelSpec("llama3.1:8b", llama, config_label="llama3.1"),
        ModelSpec("llama3.1:latest", llama, config_label="llama3.1"),
        ModelSpec("qwen2.5-coder:7b", (weights[1], license_apache, template_instruct, system)),
        ModelSpec("mistral:7b", (weights[2], license_apache, template_instruct, params)),
        ModelSpec("hf.co/acme/phi-3-mini-GGUF:Q4_K_M", (weights[3], template_chat)),
        ModelSpec("llava:7b", (weights[4], projector, license_llama, template_chat, params)),
        ModelSpec("acme/embedder:v1", (embedder, license_apache)),
    ]


def many_layout(models: int = 100, weights_size: int = 64 * KIB) -> list[ModelSpec]:
    """``models`` models over exactly 3 x ``models`` distinct blobs (for 100: 300).

    Each model has its own config and weights; templates and licenses are
    shared by groups of ten models, params by pairs: 100 + 100 + 10 + 10 + 80
    blobs for 100 models, so the populate must deduplicate as in a real store.
    """
    groups = max(1, models // 10)
    params_kinds = models - 2 * groups
    specs = []
    for index in range(models):
        layers = (
            BlobSpec(f"many-weights:{index}", weights_size),
            BlobSpec(f"many-template:{index % groups}", 1200, TEMPLATE),
            BlobSpec(f"many-license:{index % groups}", 8 * KIB, LICENSE),
            BlobSpec(f"many-params:{index % params_kinds}", 150, PARAMS),
        )
        specs.append(ModelSpec(f"bench/model-{index:03d}:q4_k_m", layers))
    return specs


def small_blobs_layout(
    large: int = 4, small: int = 96, large_size: int = 96 * MIB
) -> list[ModelSpec]:
    """Many small models beside a few large ones: ``large`` models of 96 MiB and
    ``small`` of 1 MiB, each with its own config, all sharing one template and
    one license (for 4 + 96: 202 blobs, 480 MiB). Per-blob costs show here."""
    template = BlobSpec("small-template", 1200, TEMPLATE)
    license_ = BlobSpec("small-license", 8 * KIB, LICENSE)
    sizes = [large_size] * large + [MIB] * small
    return [
        ModelSpec(f"bench/small-{index:03d}:q4_k_m",
                  (BlobSpec(f"small-weights:{index}", size), template, license_))
        for index, size in enumerate(sizes)
    ]  # fmt: skip


def layout_key(models: Sequence[ModelSpec]) -> str:
    """A short digest of a layout: same key, same store."""
    shapes = [[m.name, m.config_label, [vars(b) for b in m.layers]] for m in models]
    description = json.dumps([GENERATOR_VERSION, shapes], sort_keys=True)
    return hashlib.sha256(description.encode()).hexdigest()[:12]


def ensure_store(workdir: Path, kind: str, models: Sequence[ModelSpec]) -> BuiltStore:
    """The store of ``models`` under ``workdir``: reused when intact, else built."""
    home = workdir / f"{kind}-{layout_key(models)}"
    cached = _load_cached(home)
    if cached is not None:
        return cached
    shutil.rmtree(home, ignore_errors=True)
    partial = home.with_name(home.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    built = build_store(partial / "store", models)
    (partial / "built.json").write_text(json.dumps(built.to_json(), indent=1))
    partial.rename(home)
    built.root = home / "store"
    return built


def _load_cached(home: Path) -> BuiltStore | None:
    """A finished build whose files all still have their sizes, else None."""
    try:
        document = json.loads((home / "built.json").read_text())
    except (OSError, ValueError):
        return None
    built = BuiltStore(
        root=home / "store",
        models=list(document["models"]),
        blobs={str(k): int(v) for k, v in document["blobs"].items()},
        manifests={str(k): int(v) for k, v in document["manifests"].items()},
    )
    for relpath, size in {**built.blobs, **built.manifests}.items():
        try:
            if (built.root / relpath).stat().st_size != size:
                return None
        except OSError:
            return None
    return built


def build_store(root: Path, models: Sequence[ModelSpec]) -> BuiltStore:
    """Write every distinct blob once, then each model's manifest."""
    (root / "blobs").mkdir(parents=True)
    (root / "manifests").mkdir()
    incoming = root / ".incoming"
    incoming.mkdir()
    built = BuiltStore(root=root, models=[model.name for model in models])
    written: dict[str, dict[str, object]] = {}
    for model in models:
        descriptors = []
        for spec in (model.config, *model.layers):
            if spec.label not in written:
                content = _config_content(model) if spec.media_type == CONFIG else None
                digest, size = _write_blob(root, incoming, spec, content)
                written[spec.label] = {"mediaType": spec.media_type, "digest": digest, "size": size}
                built.blobs[f"blobs/sha256-{digest[len('sha256:') :]}"] = size
            descriptors.append(written[spec.label])
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
        relpath = manifest_relpath(model.name)
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(manifest, separators=(",", ":")).encode()
        path.write_bytes(data)
        built.manifests[relpath] = len(data)
    incoming.rmdir()
    return built


def manifest_relpath(name: str) -> str:
    """Ollama's manifest path for a valid name (defaults filled in)."""
    rest, tag = name, "latest"
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, tag = rest.rpartition(":")
    parts = rest.split("/")
    defaults = ["registry.ollama.ai", "library"][: 3 - len(parts)]
    return "/".join(["manifests", *defaults, *parts, tag])


def _config_content(model: ModelSpec) -> bytes:
    document = {
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": model.config_label or model.name,
        "file_type": "Q4_K_M",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _write_blob(
    root: Path, incoming: Path, spec: BlobSpec, content: bytes | None
) -> tuple[str, int]:
    """Write a blob under a temporary name, hashing as it goes; rename it to its digest."""
    temporary = incoming / f"blob-{len(os.listdir(root / 'blobs'))}"
    digest = hashlib.sha256()
    size = 0
    with open(temporary, "wb") as handle:
        for chunk in _chunks(spec, content):
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    hexdigest = digest.hexdigest()
    os.rename(temporary, root / "blobs" / f"sha256-{hexdigest}")
    return f"sha256:{hexdigest}", size


def _chunks(spec: BlobSpec, content: bytes | None) -> Iterable[bytes]:
    if content is not None:
        return [content]
    if spec.media_type in TEXT_TYPES:
        words = f"{spec.label} synthetic benchmark text. ".encode()
        return [(words * (spec.size // len(words) + 1))[: spec.size]]
    return _random_chunks(spec.label, spec.size)


def _random_chunks(seed: str, size: int) -> Iterator[bytes]:
    generator = random.Random(seed)  # noqa: S311 - benchmark data, not secrets
    remaining = size
    while remaining > 0:
        step = min(CHUNK, remaining)
        yield generator.randbytes(step)
        remaining -= step
