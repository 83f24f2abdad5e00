"""Make a destination store (the RAM disk) hold a model set from a source store.

Hot models end up as real files, byte-identical to the source's; cold models
get their manifest and symlinks to the source's blobs. The run is a survey of
the destination (stat and small manifest reads only, under the lock), then a
decision (does it fit; with ``fallback_link``, what to link instead), then
the changes, in the order that keeps every installed manifest whole:

1. stale temporary files of an interrupted run are removed;
2. with ``prune``, manifests leaving the set, then blobs nothing uses any more;
3. hot blobs are copied (temporary file, then rename), cold ones linked;
4. a manifest is installed once every blob it names is in place;
5. with ``prune``, blobs only the replaced manifests used.

Decisions recorded here, beyond the contract:

- DEST itself is created when missing (0755, owner applied), its parent
  never: a missing parent usually means the RAM disk is not mounted.
- A dry run creates nothing, not even the lock file: it takes a shared lock
  only when the lock file already exists, so it waits for a running populate.
- With ``verify`` a blob that fails its hash is not installed; models whose
  blobs all verified are still installed, the others are not, and the run
  fails naming the blob and its models.
- Temporary files are fsync'ed before the rename: free on tmpfs, and on a
  disk destination it keeps a crash from leaving an empty file under a final
  name.
- The file work runs as the user who controls DEST (identity.py), never as
  root on a tree another user controls; ``owner`` is given only to what the
  run creates, and an entry already there keeps its owner.
- ``ram_only`` is reported on every run, pruning or not.
- Models write-back recorded in the source (record.py) are kept as cold
  unless listed, and reported as ``written_back``.
- A blob an earlier fallback already linked is listed under ``fallback``
  again but not rewritten: only a link written makes the run ``changed``, so
  that a RAM disk too small for its set is still idempotent.
"""

from __future__ import annotations

import math
import os
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import (
    InvalidInput,
    InvalidOption,
    MalformedManifest,
    OperationFailed,
    OutOfSpace,
    VerificationFailed,
)
from .fsops import (
    CopyFailed,
    DestTree,
    HashMismatch,
    Owner,
    StoreLock,
    check_disjoint,
    copy_blob,
    parse_owner,
)
from .identity import acting_as, run_identity
from .names import ModelName, parse_names
from .plan import ModelSet, resolve_model_set
from .progress import Reporter, summary_line
from .record import read_record
from .safeio import default_jobs, parallel
from .sizes import PAGE_SIZE, human, round_up
from .store import BLOB_NAME_RE, MAX_MANIFEST_BYTES, Blob, Manifest, Store, parse_manifest


@dataclass
class PopulateOptions:
    """What to put where; mirrors the ``populate`` command line."""

    source: Path
    dest: Path
    models: Sequence[str]
    cold: Sequence[str] = ()
    verify: bool = False
    prune: bool = False
    dry_run: bool = False
    owner: str | None = None
    jobs: int | None = None  # None: safeio.default_jobs()
    fallback_link: bool = False
    lock_timeout: float = 600.0


@dataclass
class PopulateResult:
    """What a run did (or, dry, would do); ``to_dict`` is the CLI contract."""

    dry_run: bool
    copied: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    ram_only: list[str] = field(default_factory=list)
    written_back: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    models_added: list[str] = field(default_factory=list)
    models_removed: list[str] = field(default_factory=list)
    skipped: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    # Changes no list shows: directories created, fallback links written.
    touched: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.copied or self.linked or self.pruned or self.manifests or self.touched)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "copied": sorted(self.copied),
            "linked": sorted(self.linked),
            "fallback": sorted(self.fallback),
            "pruned": list(self.pruned),
            "ram_only": list(self.ram_only),
            "written_back": list(self.written_back),
            "skipped": self.skipped,
            "bytes_copied": self.bytes_copied,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "manifests": list(self.manifests),
            "models_added": list(self.models_added),
            "models_removed": list(self.models_removed),
        }


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


def populate(options: PopulateOptions, reporter: Reporter | None = None) -> PopulateResult:
    """Apply the model set to ``options.dest``; see the module docstring for the rules.

    Raises InvalidInput subclasses (exit 2) before anything changes, and
    OutOfSpace, VerificationFailed, LockTimeout or OperationFailed (exit 1).
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    owner = parse_owner(options.owner)
    jobs = default_jobs() if options.jobs is None else _check_jobs(options.jobs)
    timeout = _check_timeout(options.lock_timeout)
    source = Store(Path(options.source))
    dest = Path(options.dest)
    identity = run_identity(
        [dest],
        [source.root],
        owner_uid=owner.uid if owner else -1,
        owner_gid=owner.gid if owner else -1,
    )
    with acting_as(identity):
        result = _populate(
            options,
            source=source,
            dest=dest,
            owner=owner,
            jobs=jobs,
            timeout=timeout,
            reporter=reporter,
        )
    result.seconds = time.monotonic() - started
    return result


def _populate(
    options: PopulateOptions,
    *,
    source: Store,
    dest: Path,
    owner: Owner | None,
    jobs: int,
    timeout: float,
    reporter: Reporter,
) -> PopulateResult:
    source.require_directory("source")
    check_disjoint(source.root, dest)
    written_back = _written_back(source, options, reporter)
    model_set = resolve_model_set(
        source, list(options.models), [*options.cold, *(name.qualified for name in written_back)]
    )
    run = _Run(
        options,
        model_set=model_set,
        source=source,
        tree=DestTree(dest, owner),
        reporter=reporter,
        jobs=jobs,
    )
    run.result.written_back = [name.qualified for name in written_back]
    try:
        if not run.tree.open_root():
            _check_parent(dest)
            if not options.dry_run:
                # Nothing to lock yet: check the space before DEST is even created.
                run.decide(run.survey())
                run.result.touched = run.tree.create_root()
        with StoreLock(run.tree, timeout, shared_if_present=options.dry_run, on_wait=reporter.warn):
            survey = run.survey()
            fallback = run.decide(survey)
            if options.dry_run:
                run.preview(survey, fallback)
            else:
                run.apply(survey, fallback)
    finally:
        run.tree.close()
    return run.result


def _written_back(source: Store, options: PopulateOptions, reporter: Reporter) -> list[ModelName]:
    """Recorded models of the source outside the set, kept as cold (record.py).

    One that cannot be served (manifest gone or broken, blob missing) is left
    out with a warning: it must never keep ollama.service from starting."""
    listed = set(parse_names([*options.models, *options.cold]))
    kept = []
    for name in read_record(source.root, reporter.warn):
        if name in listed:
            continue
        try:
            source.check_blobs(source.read_manifest(name))
        except InvalidInput as error:
            reporter.warn(f"written-back model {name.short} not kept: {error}")
            continue
        kept.append(name)
    return kept


def _check_jobs(jobs: object) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidOption(f"jobs: expected a whole number of at least 1, got {jobs!r}")
    return jobs


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidOption(f"lock_timeout: expected a number of seconds, got {timeout!r}")
    if not math.isfinite(timeout) or timeout < 0:
        raise InvalidOption(f"lock_timeout: expected 0 or more seconds, got {timeout!r}")
    return float(timeout)


def _check_parent(dest: Path) -> None:
    parent = dest.absolute().parent
    if not parent.is_dir():
        raise InvalidOption(
            f"dest: neither {dest} nor its parent {parent} exists (is the RAM disk mounted?)"
        )


def _users(model_set: ModelSet) -> dict[str, tuple[str, ...]]:
    """Blob file name -> the models that need it, in the order listed."""
    users: dict[str, list[str]] = {}
    for manifest in model_set.manifests:
        for blob in manifest.blobs:
            users.setdefault(blob.filename, []).append(manifest.name.short)
    return {name: tuple(models) for name, models in users.items()}


def _blob_names(manifest: Manifest) -> set[str]:
    return {blob.filename for blob in manifest.blobs}


class _Run:
    """One populate: the survey, the decision and the changes share this state."""

    def __init__(
        self,
        options: PopulateOptions,
        *,
        model_set: ModelSet,
        source: Store,
        tree: DestTree,
        reporter: Reporter,
        jobs: int,
    ) -> None:
        self.options = options
        self.model_set = model_set
        self.source = source
        self.source_blobs = Path(os.path.abspath(source.root)) / "blobs"
        self.tree = tree
        self.reporter = reporter
        self.jobs = jobs
        self.users = _users(model_set)
        self.result = PopulateResult(dry_run=options.dry_run)
        self._started = time.monotonic()

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
            return _blob_names(parse_manifest(name, self.tree.root / name.manifest_relpath, raw))
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
            elif self.options.prune:
                survey.removed_models.append(name)
                survey.early_prune.append(name.manifest_relpath)
        if self.options.prune:
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
        if not self.options.fallback_link or fixed + PAGE_SIZE * len(survey.copies) > available:
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

    # ------------------------------------------------------------ dry run

    def preview(self, survey: Survey, fallback: list[BlobJob]) -> None:
        """What apply() would do, changing nothing at all."""
        result = self.result
        result.copied = [job.relpath for job in survey.copies]
        result.bytes_copied = sum(job.blob.size for job in survey.copies)
        result.linked = [job.relpath for job in survey.links]
        result.fallback = [job.relpath for job in fallback]
        result.skipped = survey.in_place
        result.pruned = survey.early_prune + survey.late_prune
        result.manifests = [manifest.name.qualified for manifest in survey.manifests]
        result.models_added = [
            m.name.qualified for m in survey.manifests if m.name in survey.absent
        ]
        result.models_removed = [name.qualified for name in survey.removed_models]
        result.ram_only = [name.qualified for name in survey.ram_only]
        # A real run would at least create DEST.
        result.touched = not self.tree.exists or not all(
            self._link_in_place(job) for job in fallback
        )
        for job in fallback:
            self.reporter.warn(self._fallback_warning(job, "would not fit"))

    # ------------------------------------------------------------ changes

    def apply(self, survey: Survey, fallback: list[BlobJob]) -> None:
        result, tree, reporter = self.result, self.tree, self.reporter
        result.skipped = survey.in_place
        result.ram_only = [name.qualified for name in survey.ram_only]
        stale = tree.clean_staging()
        if stale:
            reporter.warn(f"removed {len(stale)} temporary file(s) left by an interrupted run")
        self._prune(survey.early_prune)
        result.models_removed = [name.qualified for name in survey.removed_models]
        for job in fallback:
            reporter.warn(self._fallback_warning(job, "does not fit in the RAM disk"))
        if survey.copies or survey.links or fallback:
            tree.dir_fd("blobs", create=True)
        # Every file reported from here on: blobs, then manifests and late prunes.
        reporter.start(
            sum(job.blob.size for job in survey.copies),
            len(survey.copies)
            + len(survey.links)
            + len(fallback)
            + len(survey.manifests)
            + len(survey.late_prune),
        )
        failures = self._copy_all(survey.copies)
        if self.options.fallback_link:
            for job, failure in failures.items():
                reporter.warn(self._fallback_warning(job, failure.reason))
            fallback = fallback + list(failures)
            failures = {}
        self._link_all(survey.links, "linked", result.linked)
        self._link_all(fallback, "fallback", result.fallback)
        failed = {job.blob.filename for job in failures}
        kept_old = self._install_manifests(survey, failed)
        if survey.late_prune:
            self._prune([rel for rel in survey.late_prune if rel[len("blobs/") :] not in kept_old])
        tree.remove_staging_if_empty()
        reporter.finish(self._summary())
        if failures:
            raise _failure(failures, self._left_out(survey, failed))

    def _fallback_warning(self, job: BlobJob, reason: str) -> str:
        return (
            f"{job.relpath} ({human(job.blob.size)}, needed by {job.who()}) {reason};"
            f" linked to {job.source} instead, so it is served from disk"
        )

    def _summary(self) -> str:
        result = self.result
        line = summary_line(
            "copied", len(result.copied), result.bytes_copied, time.monotonic() - self._started
        )
        return (
            f"{line}; linked {len(result.linked)}, fallback {len(result.fallback)},"
            f" pruned {len(result.pruned)}, {result.skipped} already in place"
        )

    def _copy_all(self, jobs: list[BlobJob]) -> dict[BlobJob, CopyFailed]:
        """Copy blobs, biggest first, ``self.jobs`` at a time; the failures by job."""
        self._started = time.monotonic()
        if not jobs:
            return {}
        stop = threading.Event()
        done_lock = threading.Lock()
        failures: dict[BlobJob, CopyFailed] = {}

        def copy(job: BlobJob) -> None:
            if stop.is_set():
                with done_lock:
                    failures[job] = CopyFailed(
                        job.source, "not attempted: the destination is full", no_space=True
                    )
                return
            try:
                copy_blob(
                    self.tree,
                    job.source,
                    job.relpath,
                    job.blob.size,
                    expected_hex=job.blob.hex if self.options.verify else None,
                    progress=self.reporter.advance,
                )
            except CopyFailed as failure:
                with done_lock:
                    failures[job] = failure
                if failure.no_space and not self.options.fallback_link:
                    stop.set()  # the rest would only fill the disk again
                return
            with done_lock:
                self.result.copied.append(job.relpath)
                self.result.bytes_copied += job.blob.size
            self.reporter.file_done(job.relpath, job.blob.size, "copied")

        parallel(copy, sorted(jobs, key=lambda job: job.blob.size, reverse=True), self.jobs)
        return failures

    def _link_all(self, jobs: list[BlobJob], action: str, into: list[str]) -> None:
        for job in jobs:
            if not self._link_in_place(job):  # else linked by an earlier fallback
                self.tree.install_symlink(job.relpath, str(job.source))
                self.result.touched = True
            into.append(job.relpath)
            self.reporter.file_done(job.relpath, 0, action)

    def _link_in_place(self, job: BlobJob) -> bool:
        status = self.tree.lstat(job.relpath)
        return (
            status is not None
            and stat.S_ISLNK(status.st_mode)
            and self.tree.readlink(job.relpath) == str(job.source)
        )

    def _install_manifests(self, survey: Survey, failed: set[str]) -> set[str]:
        """Install each manifest whose blobs are all in place; the blob names that
        manifests left as they were still use (never pruned)."""
        kept_old: set[str] = set()
        for manifest in survey.manifests:
            if _blob_names(manifest) & failed:
                kept_old |= survey.old_refs.get(manifest.name, set())
                continue
            self.tree.install_bytes(manifest.relpath, manifest.raw)
            self.result.manifests.append(manifest.name.qualified)
            if manifest.name in survey.absent:
                self.result.models_added.append(manifest.name.qualified)
            self.reporter.file_done(manifest.relpath, len(manifest.raw), "installed")
        return kept_old

    def _left_out(self, survey: Survey, failed: set[str]) -> list[str]:
        return [m.name.short for m in survey.manifests if _blob_names(m) & failed]

    def _prune(self, relpaths: list[str]) -> None:
        """Manifests first (so none ever names a missing blob), then blobs."""
        for relpath in sorted(relpaths, key=lambda rel: not rel.startswith("manifests/")):
            self.tree.unlink(relpath)
            self.result.pruned.append(relpath)
            self.reporter.file_done(relpath, 0, "pruned")
            if relpath.startswith("manifests/"):
                self.tree.remove_empty_dirs(relpath.rpartition("/")[0], "manifests")


def _is_blob_name(filename: str) -> bool:
    return bool(BLOB_NAME_RE.match(filename))


def _failure(failures: dict[BlobJob, CopyFailed], left_out: list[str]) -> OperationFailed:
    """One error naming every blob that failed, its models, and what was left out."""
    lines = [
        f"{job.relpath} (needed by {job.who()}) not installed: {failure.reason}"
        for job, failure in sorted(failures.items(), key=lambda item: item[0].relpath)
    ]
    if left_out:
        lines.append(f"models not installed: {', '.join(left_out)}; the others were")
    message = "\n".join(lines)
    if any(isinstance(failure, HashMismatch) for failure in failures.values()):
        return VerificationFailed(message)
    if any(failure.no_space for failure in failures.values()):
        return OutOfSpace(message)
    return OperationFailed(message)
