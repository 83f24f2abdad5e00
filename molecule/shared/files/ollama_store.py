#!/usr/bin/env python3
"""Write a realistic Ollama model store for the test instances (test fixture).

The store has the layout `ollama pull` leaves behind: compact JSON manifests
under manifests/<host>/<namespace>/<model>/<tag> and blobs named after the
sha256 of their content under blobs/. Models share blobs the way real ones do
(one chat template for a family, one license for several models, the same
weights under two tags), so that deduplication, cold links and pruning are
exercised with the real shapes. Blobs are a few MiB of deterministic bytes,
except an optional sparse "huge" model that no test instance can hold in RAM.

Usage (as the store's owner):
    ollama_store.py --store DIR [--model NAME]... [--huge-size SIZE] [--record FILE]
Without --model, every model of the catalogue that is not marked "extra" is
written. Existing files are kept, so a second run changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024 * 1024

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.ollama.image.{}"

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
    """One catalogue entry; equal `weights` keys mean shared weight blobs."""

    name: str
    family: str
    weights: str
    weights_mib: int
    template: str | None
    license: str
    params: dict[str, object] = field(default_factory=dict)
    # Not written by default: pulled by a test later, or too large on purpose.
    extra: bool = False
    huge: bool = False


CATALOGUE = [
    Model("llama3.1:8b", "llama", "llama3.1-8b", 4, "llama3", "llama3.1", {"stop": ["<|eot_id|>"]}),
    # `ollama pull llama3.1` and `llama3.1:8b` are the same manifest.
    Model(
        "llama3.1:latest", "llama", "llama3.1-8b", 4, "llama3", "llama3.1", {"stop": ["<|eot_id|>"]}
    ),
    Model("llama3.2:3b", "llama", "llama3.2-3b", 3, "llama3", "llama3.2", {"stop": ["<|eot_id|>"]}),
    Model(
        "mistral:7b", "llama", "mistral-7b", 5, "mistral", "apache", {"stop": ["[INST]", "[/INST]"]}
    ),
    Model("qwen2.5:7b", "qwen2", "qwen2.5-7b", 4, "qwen", "apache", {"stop": ["<|im_end|>"]}),
    Model(
        "nomic-embed-text:latest", "nomic-bert", "nomic-embed", 1, None, "apache", {"num_ctx": 8192}
    ),
    Model(
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        "llama",
        "llama3.2-1b-q4km",
        2,
        "llama3",
        "llama3.2",
    ),
    Model("phi3:mini", "phi3", "phi3-mini", 2, "phi3", "mit", {"stop": ["<|end|>"]}),
    Model("gemma2:2b", "gemma2", "gemma2-2b", 3, "gemma", "gemma", {"stop": ["<end_of_turn>"]}),
    Model("tinyllama:latest", "llama", "tinyllama", 1, "zephyr", "apache", extra=True),
    Model(
        "llama3.1:405b", "llama", "llama3.1-405b", 0, "llama3", "llama3.1", extra=True, huge=True
    ),
]


def parse_size(text: str) -> int:
    """A number of bytes, or a number with k, m, g or t (powers of 1024)."""
    units = {"k": 1, "m": 2, "g": 3, "t": 4}
    text = text.strip().lower()
    if text and text[-1] in units:
        return int(float(text[:-1]) * 1024 ** units[text[-1]])
    return int(text)


def split_name(name: str) -> tuple[str, str, str, str]:
    """host, namespace, model, tag with Ollama's defaults (the fixture's names are valid)."""
    rest, tag = name, "latest"
    if rest.rfind(":") > rest.rfind("/"):
        rest, tag = rest.rsplit(":", 1)
    parts = rest.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) > 1 else "library"
    host = parts[-3] if len(parts) > 2 else "registry.ollama.ai"
    return host, namespace, model, tag


class Store:
    """Writes blobs and manifests atomically, never touching an existing file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (root / "manifests").mkdir(parents=True, exist_ok=True)

    def _install(self, path: Path, data: bytes) -> None:
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def blob(self, data: bytes, media: str) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        self._install(self.blobs / f"sha256-{digest}", data)
        return {"mediaType": media, "digest": f"sha256:{digest}", "size": len(data)}

    def zero_blob(self, size: int, media: str) -> dict[str, object]:
        """A sparse blob of zeros: huge on paper, nothing on disk."""
        digest = hashlib.sha256()
        chunk = bytes(MIB)
        left = size
        while left:
            step = min(left, MIB)
            digest.update(chunk[:step])
            left -= step
        path = self.blobs / f"sha256-{digest.hexdigest()}"
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("wb") as handle:
                handle.truncate(size)
            os.replace(tmp, path)
        return {"mediaType": media, "digest": f"sha256:{digest.hexdigest()}", "size": size}

    def manifest(self, name: str, manifest: dict[str, object]) -> Path:
        path = self.root.joinpath("manifests", *split_name(name))
        # Ollama writes manifests as compact JSON.
        self._install(path, json.dumps(manifest, separators=(",", ":")).encode())
        return path


def weights_bytes(key: str, mib: int) -> bytes:
    """A GGUF-looking file: the magic, a version, then deterministic noise."""
    noise = random.Random(key).randbytes(mib * MIB - 8)  # noqa: S311 - test data, not secrets
    return b"GGUF" + (3).to_bytes(4, "little") + noise


def write_model(store: Store, model: Model, huge_size: int) -> dict[str, object]:
    if model.huge:
        weights = store.zero_blob(huge_size, LAYER_TYPE.format("model"))
    else:
        weights = store.blob(
            weights_bytes(model.weights, model.weights_mib), LAYER_TYPE.format("model")
        )
    layers = [weights]
    if model.template is not None:
        layers.append(store.blob(TEMPLATES[model.template].encode(), LAYER_TYPE.format("template")))
    layers.append(store.blob(LICENSES[model.license].encode(), LAYER_TYPE.format("license")))
    if model.params:
        params = json.dumps(model.params, separators=(",", ":")).encode()
        layers.append(store.blob(params, LAYER_TYPE.format("params")))
    config = {
        "model_format": "gguf",
        "model_family": model.family,
        "model_families": [model.family],
        "model_type": model.weights.rsplit("-", 1)[-1].upper(),
        "file_type": "Q4_K_M",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
    }
    config_layer = store.blob(json.dumps(config, separators=(",", ":")).encode(), CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_layer,
        "layers": layers,
    }
    path = store.manifest(model.name, manifest)
    return {
        "manifest": str(path.relative_to(store.root)),
        "manifest_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "blobs": [config_layer["digest"], *(layer["digest"] for layer in layers)],
        "bytes": sum(int(layer["size"]) for layer in [config_layer, *layers]),  # type: ignore[call-overload]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", required=True, type=Path, help="the store root (OLLAMA_MODELS)")
    parser.add_argument(
        "--model", action="append", default=[], help="write only these catalogue models"
    )
    parser.add_argument(
        "--huge-size", default="1g", help="size of the huge model's weights (default 1g)"
    )
    parser.add_argument("--record", type=Path, help="write what was created as JSON to this file")
    args = parser.parse_args(argv)

    by_name = {model.name: model for model in CATALOGUE}
    unknown = [name for name in args.model if name not in by_name]
    if unknown:
        print(f"ollama_store: not in the catalogue: {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [by_name[name] for name in args.model] or [m for m in CATALOGUE if not m.extra]

    store = Store(args.store)
    written = {
        model.name: write_model(store, model, parse_size(args.huge_size)) for model in chosen
    }
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n")
    print(json.dumps({"store": str(args.store), "models": sorted(written)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
