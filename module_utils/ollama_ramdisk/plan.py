"""From a model set to the blobs it needs and the RAM disk that holds them.

Models share blobs (a license, a template, the same weights under two tags),
so each blob is counted once across the set; tmpfs allocates whole pages, so
each file is rounded up to one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .defaults import HEADROOM
from .errors import InputProblems, InvalidInput, InvalidOption
from .identity import acting_as, run_identity
from .limits import Limit, LoadMode, detect_gpus, load_mode
from .memory import default_reserve, memory_total
from .names import ModelName, parse_name
from .sizes import MIB, PAGE_SIZE, format_size, human, round_up
from .store import Blob, Manifest, Store


@dataclass(frozen=True)
class ModelSet:
    """Validated manifests of the hot and the cold models."""

    hot: tuple[Manifest, ...]
    cold: tuple[Manifest, ...]

    def hot_blobs(self) -> dict[str, Blob]:
        """Distinct blobs of the hot models, keyed by file name (as Ollama keys them)."""
        return _distinct_blobs(self.hot)

    def cold_only_blobs(self) -> dict[str, Blob]:
        """Blobs only cold models need (to be linked, not copied)."""
        hot = self.hot_blobs()
        return {key: blob for key, blob in _distinct_blobs(self.cold).items() if key not in hot}

    @property
    def manifests(self) -> tuple[Manifest, ...]:
        return self.hot + self.cold


def _distinct_blobs(manifests: Sequence[Manifest]) -> dict[str, Blob]:
    blobs: dict[str, Blob] = {}
    for manifest in manifests:
        for blob in manifest.blobs:
            blobs.setdefault(blob.filename, blob)
    return blobs


def _unique_names(references: Sequence[object], problems: list[InvalidInput]) -> list[ModelName]:
    names: dict[ModelName, None] = {}
    for reference in references:
        try:
            name = parse_name(reference)
        except InvalidInput as error:
            problems.append(error)
            continue
        names.setdefault(name)
    return list(names)


def resolve_model_set(
    store: Store,
    hot: Sequence[object],
    cold: Sequence[object] = (),
    check_blobs: bool = True,
) -> ModelSet:
    """Parse every name and load every manifest, reporting all problems at once.

    With ``check_blobs`` each blob must exist in the store with its stated size.
    The store is read with its owner's rights (identity.py).
    """
    with acting_as(run_identity([], [store.root])):
        return _resolve(store, hot, cold, check_blobs)


def _resolve(
    store: Store, hot: Sequence[object], cold: Sequence[object], check_blobs: bool
) -> ModelSet:
    problems: list[InvalidInput] = []
    hot_names = _unique_names(hot, problems)
    cold_names = _unique_names(cold, problems)
    problems.extend(
        InvalidInput(f"model {name.short} is listed as both hot and cold")
        for name in cold_names
        if name in hot_names
    )
    loaded: dict[ModelName, Manifest] = {}
    for name in hot_names + cold_names:
        if name in loaded:
            continue
        try:
            manifest = store.read_manifest(name)
            if check_blobs:
                store.check_blobs(manifest)
        except InvalidInput as error:
            problems.append(error)
            continue
        loaded[name] = manifest
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise InputProblems(problems)
    return ModelSet(
        hot=tuple(loaded[name] for name in hot_names),
        cold=tuple(loaded[name] for name in cold_names),
    )


@dataclass(frozen=True)
class Plan:
    """The sizing of a RAM disk for a model set (CLI contract: ``plan --json``)."""

    model_set: ModelSet
    blob_count: int
    bytes: int
    tmpfs_bytes: int
    headroom: float
    size_bytes: int
    mem_total: int
    reserve: int
    size_override: bool = False
    notes: list[str] = field(default_factory=list)
    gpus: bool = False
    load: LoadMode = field(default_factory=lambda: LoadMode(False, "no hot model", 0, 0))
    # Limits besides memory (a unit's and its slices' MemoryMax/MemoryHigh).
    unit_limits: tuple[tuple[str, int], ...] = ()

    @property
    def limits(self) -> list[Limit]:
        """Every ceiling the RAM disk plus a load must fit under, memory first."""
        load = self.size_bytes + self.load.copy_bytes
        found = [Limit("memory", self.mem_total, load + self.reserve)]
        found += [Limit(source, limit, load) for source, limit in self.unit_limits]
        return found

    @property
    def tightest(self) -> Limit:
        return min(self.limits, key=lambda limit: limit.slack)

    @property
    def fits(self) -> bool:
        return all(limit.fits for limit in self.limits)

    @property
    def holds_set(self) -> bool:
        """False when a forced size is below what the hot models need."""
        return self.size_bytes >= self.tmpfs_bytes

    @property
    def size(self) -> str:
        return format_size(self.size_bytes)

    def short_of_set(self) -> str | None:
        """The one wording (command, module, role) for a forced size below the hot
        models' bytes; None when the size holds them."""
        if self.holds_set:
            return None
        return (
            f"the forced size {self.size} is below the {human(self.tmpfs_bytes)} the hot"
            " models need: the blobs that do not fit cannot be copied into RAM, and are"
            " linked to the disk store only where fallback-link is on"
        )

    def refusals(self) -> list[str]:
        """One sentence per limit the plan crosses: which, and by how much."""
        return [_refusal(self, limit) for limit in self.limits if not limit.fits]

    def warnings(self) -> list[str]:
        if self.gpus and self.reserve < self.load.mmap_needs:
            return [
                f"the reserve of {human(self.reserve)} is below the {human(self.load.mmap_needs)}"
                " Ollama wants available (the largest hot model plus max(8 GB, 10% of memory))"
                " to map its weights on a GPU host: loads may copy them instead"
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": [_model_entry(manifest) for manifest in self.model_set.hot],
            "cold_models": [manifest.name.qualified for manifest in self.model_set.cold],
            "blob_count": self.blob_count,
            "bytes": self.bytes,
            "tmpfs_bytes": self.tmpfs_bytes,
            "headroom": self.headroom,
            "size_bytes": self.size_bytes,
            "size": self.size,
            "size_override": self.size_override,
            "holds_set": self.holds_set,
            "mem_total": self.mem_total,
            "reserve": self.reserve,
            "gpus": self.gpus,
            "mmap": self.load.mmap,
            "mmap_reason": self.load.reason,
            "load_copy_bytes": self.load.copy_bytes,
            "limits": [limit.to_dict() for limit in self.limits],
            "limit_source": self.tightest.source,
            "fits": self.fits,
        }


def _refusal(plan: Plan, limit: Limit) -> str:
    if plan.size_override:
        disk = f"the RAM disk size {plan.size} (forced by the size option)"
    else:
        disk = (
            f"a RAM disk of {plan.size} ({human(plan.tmpfs_bytes)} of model files"
            f" x headroom {plan.headroom:g})"
        )
    load = (
        f" plus {human(plan.load.copy_bytes)} that a load copies into the engine"
        f" ({plan.load.reason.split(':')[0]})"
        if plan.load.copy_bytes
        else ""
    )
    over = human(-limit.slack)
    if limit.source == "memory":
        return (
            f"the model set does not fit: it needs {disk}{load}, but the host has"
            f" {human(plan.mem_total)} of memory and {human(plan.reserve)} must stay free"
            f" (reserve), which leaves {human(max(plan.mem_total - plan.reserve, 0))}:"
            f" {over} too much. Use fewer or smaller models (or make some of them cold),"
            " a lower headroom (at least 1.0) or a smaller reserve."
        )
    return (
        f"the model set does not fit under {limit.source} ({human(limit.bytes)}): it needs"
        f" {disk}{load}, {human(limit.needed)} in all, {over} more, and the refill charges"
        " the RAM disk's pages to that unit. Raise the limit, or use fewer or smaller"
        " models (or make some of them cold)."
    )


def _model_entry(manifest: Manifest) -> dict[str, Any]:
    return {
        "name": manifest.name.qualified,
        "manifest": manifest.relpath,
        "blobs": [blob.digest for blob in manifest.blobs],
        "bytes": manifest.blob_bytes + len(manifest.raw),
    }


def check_headroom(headroom: object) -> float:
    if isinstance(headroom, bool) or not isinstance(headroom, (int, float, str)):
        raise InvalidOption(f"headroom: expected a number, got {headroom!r}")
    try:
        value = float(headroom)
    except ValueError:
        raise InvalidOption(f"headroom: {headroom!r} is not a number") from None
    if not math.isfinite(value) or value < 1.0:
        raise InvalidOption(
            f"headroom: {headroom!r} is below 1.0; the RAM disk must hold at least the models"
        )
    return value


def size_for(tmpfs_bytes: int, headroom: float) -> int:
    """ceil(tmpfs_bytes x headroom / 1 MiB) MiB, never below tmpfs_bytes x headroom.

    At least 1 MiB: ``size=0`` would make the tmpfs unlimited.
    """
    return max(1, math.ceil(tmpfs_bytes * headroom / MIB)) * MIB


def build_plan(
    model_set: ModelSet,
    headroom: object = HEADROOM,
    reserve: int | None = None,
    mem_total: int | None = None,
    size_override: int | None = None,
    *,
    gpus: bool | None = None,
    unit_limits: Sequence[tuple[str, int]] = (),
) -> Plan:
    """Size the RAM disk for the hot models of ``model_set``.

    ``gpus`` None detects them; ``unit_limits`` are (source, bytes) ceilings
    such as ollama.service's MemoryMax (limits.unit_limits reads them).
    """
    ratio = check_headroom(headroom)
    blobs = model_set.hot_blobs()
    files = [blob.size for blob in blobs.values()]
    files += [len(manifest.raw) for manifest in model_set.hot]
    total = sum(files)
    tmpfs_bytes = sum(round_up(size, PAGE_SIZE) for size in files)
    memory = memory_total() if mem_total is None else mem_total
    if size_override is not None:
        if size_override <= 0:
            raise InvalidOption("size: 0 would make the tmpfs unlimited; give a SIZE above 0")
        size_bytes = round_up(size_override, MIB)
    else:
        size_bytes = size_for(tmpfs_bytes, ratio)
    has_gpus = detect_gpus() if gpus is None else bool(gpus)
    return Plan(
        model_set=model_set,
        blob_count=len(blobs),
        bytes=total,
        tmpfs_bytes=tmpfs_bytes,
        headroom=ratio,
        size_bytes=size_bytes,
        mem_total=memory,
        reserve=default_reserve(memory) if reserve is None else reserve,
        size_override=size_override is not None,
        gpus=has_gpus,
        load=load_mode(model_set.hot, has_gpus, memory, size_bytes),
        unit_limits=tuple(unit_limits),
    )
