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

import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .copying import CopyFailed, HashMismatch, copy_blob
from .defaults import LOCK_TIMEOUT
from .desttree import DestTree, check_disjoint
from .errors import (
    InvalidInput,
    InvalidOption,
    OperationFailed,
    OutOfSpace,
    VerificationFailed,
)
from .identity import acting_as, run_identity
from .names import ModelName, parse_names
from .owners import Owner, parse_owner
from .plan import resolve_model_set
from .populate_survey import BlobJob, DestSurvey, Survey, blob_names
from .progress import Reporter, summary_line
from .record import read_record
from .safeio import check_jobs, default_jobs, parallel
from .sizes import human
from .store import Store
from .storelock import StoreLock, check_lock_timeout


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
    lock_timeout: float = LOCK_TIMEOUT


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
    other_changes: bool = False

    @property
    def changed(self) -> bool:
        return bool(
            self.copied or self.linked or self.pruned or self.manifests or self.other_changes
        )

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


def populate(options: PopulateOptions, reporter: Reporter | None = None) -> PopulateResult:
    """Apply the model set to ``options.dest``; see the module docstring for the rules.

    Raises InvalidInput subclasses (exit 2) before anything changes, and
    OutOfSpace, VerificationFailed, LockTimeout or OperationFailed (exit 1).
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    owner = parse_owner(options.owner)
    jobs = default_jobs() if options.jobs is None else check_jobs(options.jobs)
    timeout = check_lock_timeout(options.lock_timeout)
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
    tree = DestTree(dest, owner)
    look = DestSurvey(
        model_set,
        source=source,
        tree=tree,
        prune=options.prune,
        fallback_link=options.fallback_link,
        reporter=reporter,
    )
    run = PopulateRun(options, tree=tree, reporter=reporter, jobs=jobs)
    run.result.written_back = [name.qualified for name in written_back]
    try:
        if not tree.open_root():
            _check_parent(dest)
            if not options.dry_run:
                # Nothing to lock yet: check the space before DEST is even created.
                look.decide(look.survey())
                run.result.other_changes = tree.create_root()
        with StoreLock(tree, timeout, shared_if_present=options.dry_run, on_wait=reporter.warn):
            survey = look.survey()
            fallback = look.decide(survey)
            if options.dry_run:
                run.preview(survey, fallback)
            else:
                run.apply(survey, fallback)
    finally:
        tree.close()
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


def _check_parent(dest: Path) -> None:
    parent = dest.absolute().parent
    if not parent.is_dir():
        raise InvalidOption(
            f"dest: neither {dest} nor its parent {parent} exists (is the RAM disk mounted?)"
        )


class PopulateRun:
    """One populate's changes (or their preview) once DEST has been surveyed."""

    def __init__(
        self, options: PopulateOptions, *, tree: DestTree, reporter: Reporter, jobs: int
    ) -> None:
        self.options = options
        self.tree = tree
        self.reporter = reporter
        self.jobs = jobs
        self.result = PopulateResult(dry_run=options.dry_run)
        self._started = time.monotonic()

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
        result.other_changes = not self.tree.exists or not all(
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
                self.result.other_changes = True
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
            if blob_names(manifest) & failed:
                kept_old |= survey.old_refs.get(manifest.name, set())
                continue
            self.tree.install_bytes(manifest.relpath, manifest.raw)
            self.result.manifests.append(manifest.name.qualified)
            if manifest.name in survey.absent:
                self.result.models_added.append(manifest.name.qualified)
            self.reporter.file_done(manifest.relpath, len(manifest.raw), "installed")
        return kept_old

    def _left_out(self, survey: Survey, failed: set[str]) -> list[str]:
        return [m.name.short for m in survey.manifests if blob_names(m) & failed]

    def _prune(self, relpaths: list[str]) -> None:
        """Manifests first (so none ever names a missing blob), then blobs."""
        for relpath in sorted(relpaths, key=lambda rel: not rel.startswith("manifests/")):
            self.tree.unlink(relpath)
            self.result.pruned.append(relpath)
            self.reporter.file_done(relpath, 0, "pruned")
            if relpath.startswith("manifests/"):
                self.tree.remove_empty_dirs(relpath.rpartition("/")[0], "manifests")


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
