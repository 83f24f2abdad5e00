"""What populate would change under DEST, and whether it fits: stat and small
manifest reads only, nothing written (run under the lock, and again before a
missing DEST is created)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .desttree import DestTree
from .errors import MalformedManifest, OutOfSpace
from .names import ModelName
from .plan import ModelSet
from .progress import Reporter
from .sizes import PAGE_SIZE, human, round_up
from .store import BLOB_NAME_RE, MAX_MANIFEST_BYTES, Blob, Manifest, Store, parse_manifest


@dataclass(frozen=True)
class BlobJob:
    """A blob to copy or link, where it comes from, and who needs it."""

    blob: Blob
    source: Path
    models: tuple[str, ...]

    @property
    def relpath(self) -> str:
        return f"blobs/{self.blob.filename}"

    @property
    def tmpfs_bytes(self) -> int:
        return round_up(self.blob.size, PAGE_SIZE)

    def who(self) -> str:
        return ", ".join(self.models)


@dataclass
class Survey:
    """The destination compared with the set: what is in place, what is not."""

    copies: list[BlobJob] = field(default_factory=list)
    links: list[BlobJob] = field(default_factory=list)
    in_place: int = 0
    manifests: list[Manifest] = field(default_factory=list)
    absent: set[ModelName] = field(default_factory=set)
    # Blob file names the destination's current version of a replaced manifest uses.
    old_refs: dict[ModelName, set[str]] = field(default_factory=dict)
    early_prune: list[str] = field(default_factory=list)
    late_prune: list[str] = field(default_factory=list)
    removed_models: list[ModelName] = field(default_factory=list)
    ram_only: list[ModelName] = field(default_factory=list)
    freed_bytes: int = 0
    stale_temp_files: int = 0


class DestSurvey:
    """DEST compared with a model set, and the space check of the changes."""

    def __init__(
        self,
        model_set: ModelSet,
        *,
        source: Store,
        tree: DestTree,
        prune: bool,
        fallback_link: bool,
        reporter: Reporter,
    ) -> None:
        self.model_set = model_set
        self.source = source
        self.source_blobs = Path(os.path.abspath(source.root)) / "blobs"
        self.tree = tree
        self.prune = prune
        self.fallback_link = fallback_link
        self.reporter = reporter
        self.users = _users(model_set)

    def _job(self, blob: Blob) -> BlobJob:
        return BlobJob(blob, self.source_blobs / blob.filename, self.users[blob.filename])

    # ------------------------------------------------------------ survey

    def survey(self) -> Survey:
        """Compare DEST with the set: stat and small manifest reads, nothing else."""
        survey = Survey(stale_temp_files=len(self.tree.stale_temp_files()))
        self._survey_hot_blobs(survey)
        self._survey_cold_blobs(survey)
        self._survey_manifests(survey)
        self._survey_others(survey)
        return survey

    def _survey_hot_blobs(self, survey: Survey) -> None:
        for blob in self.model_set.hot_blobs().values():
            job = self._job(blob)
            status = self.tree.lstat(job.relpath)
            # Size only: the name is the content's hash, and reading it back
            # would make every no-op run read the whole RAM disk.
            if status is not None and stat.S_ISREG(status.st_mode) and status.st_size == blob.size:
                survey.in_place += 1
            else:
                survey.copies.append(job)

    def _survey_cold_blobs(self, survey: Survey) -> None:
        for blob in self.model_set.cold_only_blobs().values():
            job = self._job(blob)
            status = self.tree.lstat(job.relpath)
            if (
                status is not None
                and stat.S_ISLNK(status.st_mode)
                and self.tree.readlink(job.relpath) == str(job.source)
            ):
                survey.in_place += 1
            else:
                survey.links.append(job)

    def _survey_manifests(self, survey: Survey) -> None:
        for manifest in self.model_set.manifests:
            current = self.tree.read_regular(manifest.relpath, MAX_MANIFEST_BYTES)
            if current == manifest.raw:
                continue
            survey.manifests.append(manifest)
            if self.tree.lstat(manifest.relpath) is None:
                survey.absent.add(manifest.name)
            survey.old_refs[manifest.name] = self._refs_of(manifest.name, current) or set()

    def _refs_of(self, name: ModelName, raw: bytes | None) -> set[str] | None:
        """Blob names a manifest in DEST uses; None when it cannot be read as one."""
        if raw is None or len(raw) > MAX_MANIFEST_BYTES:
            return None
        try:
            return blob_names(parse_manifest(name, self.tree.root / name.manifest_relpath, raw))
        except MalformedManifest:
            return None

    def _survey_others(self, survey: Survey) -> None:
        """Models in DEST outside the set: pruned when in the source, else RAM-only."""
        if self.tree.dir_fd("manifests") is None:
            others: list[ModelName] = []
        else:
            in_set = {manifest.name for manifest in self.model_set.manifests}
            others = [name for name in Store(self.tree.root).iter_models() if name not in in_set]
        for name in others:
            if not self.source.has_manifest(name):
                survey.ram_only.append(name)
            elif self.prune:
                survey.removed_models.append(name)
                survey.early_prune.append(name.manifest_relpath)
        if self.prune:
            self._survey_unused_blobs(survey)

    def _survey_unused_blobs(self, survey: Survey) -> None:
        needed = set(self.users)
        for name in survey.ram_only:
            raw = self.tree.read_regular(name.manifest_relpath, MAX_MANIFEST_BYTES)
            refs = self._refs_of(name, raw)
            if refs is None:
                self.reporter.warn(
                    f"{self.tree.root / name.manifest_relpath}: cannot be read as a manifest;"
                    " no blob is pruned, since it may use any of them"
                )
                return
            needed |= refs
        still_used = set().union(*survey.old_refs.values()) if survey.old_refs else set()
        for filename in self.tree.list_dir("blobs"):
            relpath = f"blobs/{filename}"
            if filename in needed or not _is_blob_name(filename):
                continue
            if filename in still_used:
                survey.late_prune.append(relpath)
                continue
            survey.early_prune.append(relpath)
            status = self.tree.lstat(relpath)
            if status is not None and stat.S_ISREG(status.st_mode) and status.st_nlink == 1:
                survey.freed_bytes += status.st_blocks * 512

    # ------------------------------------------------------------ decision

    def decide(self, survey: Survey) -> list[BlobJob]:
        """Check the space; the hot blobs to link instead of copy (fallback_link only)."""
        available = self._available_bytes() + survey.freed_bytes
        fixed = PAGE_SIZE * len(survey.links)
        fixed += sum(round_up(len(manifest.raw), PAGE_SIZE) for manifest in survey.manifests)
        needed = fixed + sum(job.tmpfs_bytes for job in survey.copies)
        self._check_inodes(survey)
        if needed <= available:
            return []
        if not self.fallback_link or fixed + PAGE_SIZE * len(survey.copies) > available:
            raise OutOfSpace(self._space_message(survey, needed, available))
        return self._fallback_choice(survey, available - fixed - PAGE_SIZE * len(survey.copies))

    def _available_bytes(self) -> int:
        where = self.tree.root if self.tree.exists else self.tree.root.absolute().parent
        info = os.statvfs(where)
        return info.f_bavail * info.f_frsize

    def _check_inodes(self, survey: Survey) -> None:
        where = self.tree.root if self.tree.exists else self.tree.root.absolute().parent
        info = os.statvfs(where)
        # Files, plus up to three new directories per manifest and blobs/.
        wanted = len(survey.copies) + len(survey.links) + 4 * len(survey.manifests) + 2
        if info.f_files and info.f_favail < wanted:
            raise OutOfSpace(
                f"{self.tree.root}: {wanted} files must be created but the file system"
                f" allows only {info.f_favail} more; nothing was changed"
            )

    def _space_message(self, survey: Survey, needed: int, available: int) -> str:
        models = sorted({model for job in survey.copies for model in job.models})
        return (
            f"{self.tree.root}: {human(needed)} must be written but only {human(available)}"
            f" is free; nothing was changed (copying {', '.join(models) or 'manifests'})."
            " Grow the RAM disk, prune it, or use fallback_link to serve the rest from disk"
        )

    def _fallback_choice(self, survey: Survey, budget: int) -> list[BlobJob]:
        """Whole hot models first, in the order listed, as many as fit; the rest links."""
        pending = {job.blob.filename: job for job in survey.copies}
        chosen: set[str] = set()
        for manifest in self.model_set.hot:
            wanted = {b.filename for b in manifest.blobs if b.filename in pending} - chosen
            cost = sum(pending[name].tmpfs_bytes for name in wanted)
            if cost <= budget:
                chosen |= wanted
                budget -= cost
        fallback = [job for name, job in pending.items() if name not in chosen]
        survey.copies = [job for name, job in pending.items() if name in chosen]
        return fallback


def _users(model_set: ModelSet) -> dict[str, tuple[str, ...]]:
    """Blob file name -> the models that need it, in the order listed."""
    users: dict[str, list[str]] = {}
    for manifest in model_set.manifests:
        for blob in manifest.blobs:
            users.setdefault(blob.filename, []).append(manifest.name.short)
    return {name: tuple(models) for name, models in users.items()}


def blob_names(manifest: Manifest) -> set[str]:
    return {blob.filename for blob in manifest.blobs}


def _is_blob_name(filename: str) -> bool:
    return bool(BLOB_NAME_RE.match(filename))
