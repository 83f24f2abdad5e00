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
was written. The stores are written by the tests' generator
(tests/storegen.py: its manifests, configs and blob names), so the
benchmarks and the tests share one; this module only lays them out and caches
them. A built store is cached under ``workdir`` keyed by its layout, so
a second benchmark run starts at once; the build goes into a temporary
directory renamed into place when complete, so an interrupted build is never
mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import storegen

# Bump when the generated content changes, so that cached stores are rebuilt.
GENERATOR_VERSION = 2
KIB = 1024
MIB = 1024 * KIB

MODEL = storegen.MODEL
PROJECTOR = storegen.PROJECTOR
LICENSE = storegen.LICENSE
TEMPLATE = storegen.TEMPLATE
PARAMS = storegen.PARAMS
SYSTEM = storegen.SYSTEM
CONFIG = storegen.CONFIG

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
    def config_name(self) -> str:
        # Two tags of one model share their config as well as their layers.
        return self.config_label or self.name


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
    """Write every distinct blob once, then each model's manifest (storegen)."""
    store = storegen.make_store(root)
    built = BuiltStore(root=root, models=[model.name for model in models])
    layers: dict[str, storegen.Layer] = {}
    configs: dict[str, storegen.Layer] = {}
    for model in models:
        made = [layers.setdefault(spec.label, _layer(spec)) for spec in model.layers]
        config = configs.setdefault(model.config_name, storegen.config_for(model.config_name))
        written = store.add(model.name, made, config=config)
        built.blobs.update({blob.relpath: blob.size for blob in written.blobs})
        built.manifests[written.manifest_relpath] = len(written.manifest_bytes())
    return built


def _layer(spec: BlobSpec) -> storegen.Layer:
    if spec.media_type in TEXT_TYPES:
        words = f"{spec.label} synthetic benchmark text. ".encode()
        return storegen.text((words * (spec.size // len(words) + 1))[: spec.size], spec.media_type)
    return storegen.streamed(spec.size, spec.label, spec.media_type)
