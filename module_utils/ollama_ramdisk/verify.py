"""Check that every blob of a store hashes to its name, and repair it from a source.

A blob's name is the sha256 of its content, so a store checks itself: no
source is needed to find corruption (a RAM disk page gone bad, a truncated
copy, a link whose target changed). Symlinked (cold) blobs are checked
through the link. With a repair source, each corrupt or missing blob is
copied again the way populate copies (temporary file, hash while copying,
rename), or linked again when it was a link; a missing or unreadable
manifest is restored from the source once its blobs are sound.

``corrupt`` and ``missing`` list what the check found; ``repaired`` what was
fixed; ``ok`` is true when nothing found is left unrepaired. Repaired files
take the owner of the store's root, so a RAM disk owned by ``ollama`` stays so;
the whole run works with that user's rights (identity.py). A blob is hashed
only up to the size its manifest gives, and a size its file system could not
hold (a sparse file claiming exabytes) is reported corrupt without reading.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .copying import CopyFailed, copy_blob, hash_fd, hash_file
from .defaults import LOCK_TIMEOUT, VERIFY_JOBS
from .desttree import DestTree, check_disjoint
from .errors import MalformedManifest, ModelNotFound
from .identity import acting_as, run_identity
from .names import ModelName, parse_names
from .owners import Owner
from .progress import Reporter, summary_line
from .safeio import check_jobs, implausible_size, open_regular, parallel
from .store import Blob, Manifest, Store
from .storelock import StoreLock, check_lock_timeout


@dataclass
class VerifyResult:
    """What a check found and fixed; ``to_dict`` is the CLI contract."""

    models: list[str] = field(default_factory=list)
    checked: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return set(self.corrupt + self.missing) <= set(self.repaired)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "bytes": self.bytes,
            "corrupt": sorted(self.corrupt),
            "missing": sorted(self.missing),
            "repaired": sorted(self.repaired),
            "models": list(self.models),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _BlobCheck:
    blob: Blob
    linked: bool  # the store holds a symlink: repair links again instead of copying

    @property
    def relpath(self) -> str:
        return f"blobs/{self.blob.filename}"


def verify_store(
    store: Store,
    models: Sequence[str] = (),
    repair_source: Store | None = None,
    jobs: int = VERIFY_JOBS,
    reporter: Reporter | None = None,
    *,
    lock_timeout: float = LOCK_TIMEOUT,
) -> VerifyResult:
    """Hash every blob of ``models`` (every model of the store if none).

    Raises InvalidName/InvalidOption for bad input; problems found in the
    store are reported in the result, never raised.
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    read = [store.root] + ([repair_source.root] if repair_source is not None else [])
    written = [store.root] if repair_source is not None else []
    with acting_as(run_identity(written, read)):
        result = _verify(
            store,
            models=models,
            repair_source=repair_source,
            jobs=jobs,
            reporter=reporter,
            lock_timeout=lock_timeout,
        )
    result.seconds = time.monotonic() - started
    return result


def _verify(
    store: Store,
    *,
    models: Sequence[str],
    repair_source: Store | None,
    jobs: int,
    reporter: Reporter,
    lock_timeout: float,
) -> VerifyResult:
    store.require_directory("store")
    check_jobs(jobs)
    lock_timeout = check_lock_timeout(lock_timeout)
    if repair_source is not None:
        repair_source.require_directory("source")
        check_disjoint(repair_source.root, store.root, option="store")
    names = _unique(parse_names(list(models))) if models else list(store.iter_models())
    with DestTree(store.root, option="store") as tree:
        tree.open_root()
        tree.owner = _root_owner(tree)
        shared = repair_source is None
        with StoreLock(tree, lock_timeout, shared_if_present=shared, on_wait=reporter.warn):
            check = _Check(store, tree, repair_source, jobs, reporter)
            check.run(names)
    return check.result


def _unique(names: list[ModelName]) -> list[ModelName]:
    return list(dict.fromkeys(names))


def _root_owner(tree: DestTree) -> Owner:
    status = os.fstat(tree.root_fd)
    return Owner(uid=status.st_uid, gid=status.st_gid)


class _Check:
    """One verify run: manifests, then blobs (hashed in parallel), then repairs."""

    def __init__(
        self,
        store: Store,
        tree: DestTree,
        source: Store | None,
        jobs: int,
        reporter: Reporter,
    ) -> None:
        self.store = store
        self.tree = tree
        self.source = source
        self.jobs = jobs
        self.reporter = reporter
        self.result = VerifyResult()
        # Manifests to restore from the source once their blobs are sound.
        self.restore: list[Manifest] = []
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def run(self, names: list[ModelName]) -> None:
        manifests = [m for m in (self._manifest(name) for name in names) if m is not None]
        self.result.models = [name.qualified for name in names]
        blobs: dict[str, Blob] = {}
        for manifest in manifests:
            for blob in manifest.blobs:
                blobs.setdefault(blob.filename, blob)
        problems = self._check_blobs(list(blobs.values()))
        if self.source is not None:
            stale = self.tree.clean_staging()
            if stale:
                self.reporter.warn(f"removed {len(stale)} temporary file(s) of an interrupted run")
            unrepaired = self._repair_blobs(problems)
            self._restore_manifests(unrepaired)
            self.tree.remove_staging_if_empty()
        self.reporter.finish(self._summary())

    def _manifest(self, name: ModelName) -> Manifest | None:
        """The store's manifest; the source's when the store's is lost and we repair."""
        relpath = name.manifest_relpath
        try:
            return self.store.read_manifest(name)
        except ModelNotFound:
            self.result.missing.append(relpath)
            self.reporter.file_done(relpath, 0, "missing")
        except (MalformedManifest, OSError) as error:
            self.result.corrupt.append(relpath)
            self.reporter.warn(f"{error}")
        if self.source is None:
            return None
        try:
            manifest = self.source.read_manifest(name)
        except (ModelNotFound, MalformedManifest, OSError) as error:
            self.reporter.warn(f"cannot restore {relpath} from {self.source.root}: {error}")
            return None
        self.restore.append(manifest)
        return manifest

    # ------------------------------------------------------------ checking

    def _check_blobs(self, blobs: list[Blob]) -> list[_BlobCheck]:
        """Hash every blob (biggest first, ``jobs`` at a time); the bad ones."""
        to_hash: list[_BlobCheck] = []
        problems: list[_BlobCheck] = []
        for blob in blobs:
            check = self._presence(blob)
            if check.relpath in self.result.missing or check.relpath in self.result.corrupt:
                problems.append(check)
            else:
                to_hash.append(check)
        self.result.checked = len(blobs)
        self.reporter.start(sum(check.blob.size for check in to_hash), len(to_hash))
        to_hash.sort(key=lambda check: check.blob.size, reverse=True)
        outcomes = parallel(self._hash, to_hash, self.jobs)
        problems += [check for check, sound in zip(to_hash, outcomes) if not sound]
        return problems

    def _presence(self, blob: Blob) -> _BlobCheck:
        """Missing or of the wrong size is known without reading a byte."""
        path = self.store.blob_path(blob)
        check = _BlobCheck(blob, linked=path.is_symlink())
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            self.result.missing.append(check.relpath)
            self.reporter.file_done(check.relpath, 0, "missing")
            return check
        if size != blob.size:
            self.result.corrupt.append(check.relpath)
            self.reporter.file_done(check.relpath, 0, f"corrupt ({size} bytes, not {blob.size})")
        return check

    def _hash(self, check: _BlobCheck) -> bool:
        path = self.store.blob_path(check.blob)
        nbytes, digest = 0, ""
        try:
            fd, status = open_regular(path)
        except OSError as error:
            self.reporter.warn(f"{path}: cannot be read ({error.strerror})")
        else:
            try:
                why = implausible_size(fd, check.blob.size)
                if why is not None:
                    self.reporter.warn(f"{path}: {why}; not read")
                elif status.st_size == check.blob.size:
                    nbytes, digest = hash_fd(fd, check.blob.size, self.reporter.advance)
            finally:
                os.close(fd)
        sound = digest == check.blob.hex.lower() and nbytes == check.blob.size
        with self.lock:
            self.result.bytes += nbytes
            if not sound:
                self.result.corrupt.append(check.relpath)
        self.reporter.file_done(check.relpath, nbytes, "verified" if sound else "CORRUPT")
        return sound

    # ------------------------------------------------------------ repairing

    def _repair_blobs(self, problems: list[_BlobCheck]) -> set[str]:
        """Copy (or link) each bad blob again from the source; the names still bad."""
        if problems:
            self.tree.dir_fd("blobs", create=True)
        if problems or self.restore:
            # The repairs are a phase of their own: counted from zero, so that the
            # progress line never shows more files done than it announced.
            copies = [check for check in problems if not check.linked]
            self.reporter.start(
                sum(check.blob.size for check in copies), len(problems) + len(self.restore)
            )
        unrepaired: set[str] = set()
        for check in problems:
            if self._repair(check):
                self.result.repaired.append(check.relpath)
                self.reporter.file_done(check.relpath, check.blob.size, "repaired")
            else:
                unrepaired.add(check.blob.filename)
        return unrepaired

    def _repair(self, check: _BlobCheck) -> bool:
        if self.source is None:
            raise AssertionError("a repair is asked for only with a source")
        source = Path(os.path.abspath(self.source.blob_path(check.blob)))
        try:
            if check.linked:
                return self._relink(check, source)
            try:
                copy_blob(
                    self.tree,
                    source,
                    check.relpath,
                    check.blob.size,
                    expected_hex=check.blob.hex,
                    progress=self.reporter.advance,
                )
            except CopyFailed as failure:
                if not failure.no_space:
                    raise
                return self._repair_in_place(check, source)
        except CopyFailed as failure:
            self.reporter.warn(f"cannot repair {check.relpath}: the source {failure}")
            return False
        return True

    def _repair_in_place(self, check: _BlobCheck, source: Path) -> bool:
        """No room for a second copy beside the bad one: once the source is known
        good, the bad copy goes first; if even then it does not fit, a link to the
        source serves the blob from disk."""
        _check_source(source, check.blob)
        self.tree.unlink(check.relpath)
        try:
            copy_blob(
                self.tree, source, check.relpath, check.blob.size, expected_hex=check.blob.hex
            )
        except CopyFailed as failure:
            if not failure.no_space:
                raise
            self.tree.install_symlink(check.relpath, str(source))
            self.reporter.warn(
                f"{check.relpath} does not fit in the RAM disk; linked to {source} instead,"
                " so it is served from disk"
            )
        return True

    def _relink(self, check: _BlobCheck, source: Path) -> bool:
        """A cold blob stays a link: to the source's blob, once that hashes right."""
        _check_source(source, check.blob)
        self.tree.install_symlink(check.relpath, str(source))
        return True

    def _restore_manifests(self, unrepaired: set[str]) -> None:
        for manifest in self.restore:
            if any(blob.filename in unrepaired for blob in manifest.blobs):
                self.reporter.warn(f"{manifest.relpath} not restored: a blob it needs is bad")
                continue
            self.tree.install_bytes(manifest.relpath, manifest.raw)
            self.result.repaired.append(manifest.relpath)
            self.reporter.file_done(manifest.relpath, len(manifest.raw), "restored")

    def _summary(self) -> str:
        result = self.result
        line = summary_line(
            "verified", result.checked, result.bytes, time.monotonic() - self.started
        )
        if not result.corrupt and not result.missing:
            return f"{line}: ok"
        return (
            f"{line}: {len(result.corrupt)} corrupt, {len(result.missing)} missing,"
            f" {len(result.repaired)} repaired"
        )


def _check_source(source: Path, blob: Blob) -> None:
    """Raise CopyFailed unless the source blob hashes to its name."""
    try:
        nbytes, digest = hash_file(source, blob.size)
    except OSError as error:
        raise CopyFailed(source, f"cannot be read ({error.strerror})") from None
    if nbytes != blob.size or digest != blob.hex.lower():
        raise CopyFailed(source, f"content hashes to sha256:{digest}")
