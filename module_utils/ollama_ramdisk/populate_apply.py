"""populate's changes once DEST has been surveyed (populate_survey.py): the
dry run's preview, or the copies, links, manifests and prunes, in the order
populate.py's docstring gives."""

from __future__ import annotations

import stat
import threading
import time
from typing import TYPE_CHECKING

from .copying import CopyFailed, HashMismatch, copy_blob
from .desttree import DestTree
from .errors import OperationFailed, OutOfSpace, VerificationFailed
from .populate_survey import BlobJob, Survey, blob_names
from .progress import Reporter, summary_line
from .safeio import parallel
from .sizes import human

if TYPE_CHECKING:
    from .populate import PopulateOptions, PopulateResult


class PopulateRun:
    """One populate's changes (or their preview) once DEST has been surveyed."""

    def __init__(
        self,
        options: PopulateOptions,
        result: PopulateResult,
        *,
        tree: DestTree,
        reporter: Reporter,
        jobs: int,
    ) -> None:
        self.options = options
        self.result = result
        self.tree = tree
        self.reporter = reporter
        self.jobs = jobs
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
