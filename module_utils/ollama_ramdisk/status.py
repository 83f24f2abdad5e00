"""What a store holds right now: each model's residency and the mount's use.

Residency of a model, from its blobs (never hashed here: status is cheap;
``verify`` is the integrity check):

- ``ram``: every blob is a regular file in the store;
- ``linked``: every blob is there, at least one through a symlink (a cold model
  served from the disk store);
- ``partial``: a blob is missing, a link dangles, a size disagrees with the
  manifest (or is more than its file system holds), or the manifest itself
  cannot be read.

The store is read with its owner's rights (identity.py); each blob is opened
without blocking and judged by the descriptor's fstat, so that swapping a
file for a FIFO between two looks can neither hang nor fool the run.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInput, InvalidOption
from .identity import acting_as, run_identity
from .mounts import MOUNTINFO, MountInfo, find_mount
from .names import ModelName
from .safeio import implausible_size, open_regular
from .store import Blob, Manifest, Store

RESIDENCIES = ("ram", "linked", "partial")


@dataclass(frozen=True)
class ModelStatus:
    """One model of the store and how much of it is in RAM."""

    name: ModelName
    bytes: int
    residency: str
    blobs: int
    linked: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name.qualified,
            "bytes": self.bytes,
            "residency": self.residency,
            "blobs": self.blobs,
            "linked": list(self.linked),
            "missing": list(self.missing),
        }
        if self.problem:
            entry["problem"] = self.problem
        return entry


@dataclass(frozen=True)
class StoreStatus:
    """Every model of a store, the mount holding it, and (given a source) the
    models that exist only in this store."""

    store: Path
    models: tuple[ModelStatus, ...]
    mount: MountInfo | None
    ram_only: tuple[ModelName, ...] | None = None

    def count(self, residency: str) -> int:
        return sum(1 for model in self.models if model.residency == residency)

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "store": str(self.store),
            "models": [model.to_dict() for model in self.models],
            "mount": self.mount.to_dict() if self.mount else None,
        }
        if self.ram_only is not None:
            result["ram_only"] = [name.qualified for name in self.ram_only]
        return result


def store_status(
    store: Store, source: Store | None = None, mountinfo: Path = MOUNTINFO
) -> StoreStatus:
    """Residency of every model in ``store``; with ``source``, which ones it lacks."""
    read = [store.root] + ([source.root] if source is not None else [])
    with acting_as(run_identity([], read)):
        return _store_status(store, source, mountinfo)


def _store_status(store: Store, source: Store | None, mountinfo: Path) -> StoreStatus:
    if store.root.is_symlink():
        raise InvalidOption(f"store: {store.root} is a symlink; give the directory itself")
    if not store.root.is_dir():
        raise InvalidOption(f"store: {store.root} is not a directory")
    models = tuple(_model_status(store, name) for name in store.iter_models())
    ram_only = None
    if source is not None:
        ram_only = tuple(status.name for status in models if not source.has_manifest(status.name))
    return StoreStatus(
        store=store.root,
        models=models,
        mount=find_mount(store.root, mountinfo),
        ram_only=ram_only,
    )


def _model_status(store: Store, name: ModelName) -> ModelStatus:
    try:
        manifest = store.read_manifest(name)
    except (InvalidInput, OSError) as error:
        size = _size_or_zero(store.manifest_path(name))
        return ModelStatus(name, size, "partial", blobs=0, problem=str(error))
    linked: list[str] = []
    missing: list[str] = []
    for blob in manifest.blobs:
        state = _blob_state(store, blob)
        if state == "linked":
            linked.append(f"blobs/{blob.filename}")
        elif state != "ram":
            missing.append(f"blobs/{blob.filename}")
    return ModelStatus(
        name=name,
        bytes=_model_bytes(manifest),
        residency=_residency(linked, missing),
        blobs=len(manifest.blobs),
        linked=tuple(linked),
        missing=tuple(missing),
    )


def _model_bytes(manifest: Manifest) -> int:
    """The same count as a plan's: the blobs plus the manifest itself."""
    return manifest.blob_bytes + len(manifest.raw)


def _residency(linked: list[str], missing: list[str]) -> str:
    if missing:
        return "partial"
    return "linked" if linked else "ram"


def _blob_state(store: Store, blob: Blob) -> str:
    """``ram``, ``linked`` or ``missing`` (absent, dangling, wrong size, not a file)."""
    path = store.blob_path(blob)
    try:
        own = path.lstat()
        fd, target = open_regular(path)
    except OSError:
        return "missing"
    try:
        if target.st_size != blob.size or implausible_size(fd, blob.size):
            return "missing"
    finally:
        os.close(fd)
    return "linked" if stat.S_ISLNK(own.st_mode) else "ram"


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
