"""Copy models that exist only in the RAM disk back to the disk store.

With ``OLLAMA_MODELS`` on the RAM disk, ``ollama pull``, ``create`` and ``cp``
write into RAM: such a model is lost at the next reboot unless it is written
back. The RAM disk is written by any client of Ollama's API, so everything
read from it is hostile: no link below its root is ever followed (a blob that
is a link is refused, unless the disk store already holds that blob), only
regular files with Ollama's names are read, a manifest must parse, and every
write goes into the disk store only, with populate's rules:

- a model is written blobs first (temporary file outside ``blobs/``, then
  rename), its manifest last, so nothing partial stands under a final name;
- the space is checked before the first byte, and a ``reserve`` stays free
  on the disk store: a model that would cross it is not written and is
  reported, so no client can fill the disk store through the RAM disk;
- every blob is hashed while it is copied (``verify`` or not: the RAM disk
  is hostile); one whose content does not hash to its name is not written,
  nor is its model;
- a blob the disk store has is never replaced: a model whose manifest gives
  it another size is refused, unless the disk's copy does not hash to its
  name (then a RAM copy that does replaces it);
- both stores are locked (the disk store exclusively); a second run copies
  nothing; ``dry_run`` changes nothing at all.

Models are compared by manifest path: one whose manifest the disk store has
already is not RAM-only, even if the RAM copy differs, unless write-back made
it (record.py): a recorded model pulled again in RAM is written back again.
Every model written is added to the record, so that populate keeps it visible
after the next boot; with ``forget_removed`` a recorded model no longer in the
RAM disk (``ollama rm``) leaves the record. Nothing is ever deleted from the
disk store.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .copying import CopyFailed, HashMismatch, copy_blob, hash_fd
from .defaults import LOCK_TIMEOUT, WRITEBACK_RESERVE
from .desttree import DestTree, check_disjoint
from .errors import (
    InvalidOption,
    MalformedManifest,
    OperationFailed,
    OutOfSpace,
    VerificationFailed,
)
from .identity import acting_as, run_identity
from .names import ModelName
from .owners import parse_owner
from .progress import Reporter, summary_line
from .record import MAX_RECORD_BYTES, load_record, write_record
from .sizes import PAGE_SIZE, human, parse_size, round_up
from .store import MAX_MANIFEST_BYTES, Manifest, Store, parse_manifest
from .storelock import StoreLock, check_lock_timeout


@dataclass
class WritebackOptions:
    """What to write back where; mirrors the ``writeback`` command line."""

    source: Path  # the disk store: written
    dest: Path  # the RAM disk's store: read, never trusted
    verify: bool = False
    dry_run: bool = False
    owner: str | None = None
    reserve: int | str = WRITEBACK_RESERVE
    lock_timeout: float = LOCK_TIMEOUT
    # Drop recorded models the RAM disk no longer has; only while Ollama runs
    # on a RAM disk populate completed (the units ensure it), never at its stop.
    forget_removed: bool = False


@dataclass
class WritebackResult:
    """What a run wrote (or, dry, would write); ``to_dict`` is the CLI contract."""

    dry_run: bool
    written: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    bytes_copied: int = 0
    skipped: int = 0
    refused: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.written or self.copied or self.forgotten)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "written": list(self.written),
            "copied": list(self.copied),
            "bytes_copied": self.bytes_copied,
            "skipped": self.skipped,
            "refused": list(self.refused),
            "forgotten": list(self.forgotten),
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


def writeback(options: WritebackOptions, reporter: Reporter | None = None) -> WritebackResult:
    """Write every RAM-only model of ``dest`` back to ``source``.

    Raises InvalidInput (exit 2) before anything changes; OutOfSpace,
    VerificationFailed or OperationFailed (exit 1) when a model could not be
    written back: the others are, and the RAM copy is never touched.
    """
    reporter = reporter or Reporter()
    started = time.monotonic()
    owner = parse_owner(options.owner)
    reserve = parse_size(options.reserve, "reserve")
    lock_timeout = check_lock_timeout(options.lock_timeout)
    identity = run_identity(
        [Path(options.source)],
        [Path(options.dest)],
        owner_uid=owner.uid if owner else -1,
        owner_gid=owner.gid if owner else -1,
    )
    # ExitStack, not a parenthesised with: the core runs on Python 3.9.
    with acting_as(identity), contextlib.ExitStack() as stack:
        check_disjoint(Path(options.source), Path(options.dest))
        disk = stack.enter_context(DestTree(Path(options.source), owner, option="source"))
        ram = stack.enter_context(DestTree(Path(options.dest), option="dest"))
        for tree in (disk, ram):
            if not tree.open_root():
                raise InvalidOption(f"{tree.option}: {tree.root} does not exist")
        run = _Writeback(options, disk, ram, reserve, reporter)
        stack.enter_context(StoreLock(ram, lock_timeout, shared_if_present=True))
        stack.enter_context(
            StoreLock(disk, lock_timeout, shared_if_present=options.dry_run,
                      on_wait=reporter.warn)
        )  # fmt: skip
        run.run()
    run.result.seconds = time.monotonic() - started
    run.raise_failures()
    return run.result


@dataclass
class _Model:
    manifest: Manifest
    to_copy: list[str]  # blob file names the disk store lacks

    @property
    def name(self) -> str:
        return self.manifest.name.qualified


class _Writeback:
    def __init__(
        self,
        options: WritebackOptions,
        disk: DestTree,
        ram: DestTree,
        reserve: int,
        reporter: Reporter,
    ) -> None:
        self.options = options
        self.disk = disk
        self.ram = ram
        self.reserve = reserve
        self.reporter = reporter
        self.result = WritebackResult(dry_run=options.dry_run)
        self.failures: list[OperationFailed] = []
        self.recorded: list[ModelName] = []
        self.in_ram: list[ModelName] = []

    # ------------------------------------------------------------ survey

    def to_write(self) -> list[ModelName]:
        """RAM-only models, and recorded ones whose manifest changed in RAM."""
        recorded = set(self.recorded)
        found = []
        for name in self.in_ram:
            relpath = name.manifest_relpath
            if not self._disk_has(relpath):
                found.append(name)
            elif name in recorded:
                ram = self.ram.read_regular(relpath, MAX_MANIFEST_BYTES)
                if ram is not None and ram != self.disk.read_regular(relpath, MAX_MANIFEST_BYTES):
                    found.append(name)
        return found

    def _disk_has(self, relpath: str) -> bool:
        status = self.disk.lstat(relpath)
        return status is not None and stat.S_ISREG(status.st_mode)

    def _read(self, name: ModelName) -> _Model | None:
        relpath = name.manifest_relpath
        raw = self.ram.read_regular(relpath, MAX_MANIFEST_BYTES)
        if raw is None or len(raw) > MAX_MANIFEST_BYTES:
            self._refuse(name.qualified, f"{self.ram.root / relpath} is not a manifest file")
            return None
        try:
            manifest = parse_manifest(name, self.ram.root / relpath, raw)
        except MalformedManifest as error:
            self._refuse(name.qualified, str(error))
            return None
        to_copy = []
        for blob in manifest.blobs:
            relpath = f"blobs/{blob.filename}"
            status = self.disk.lstat(relpath)
            if status is None or not stat.S_ISREG(status.st_mode):
                to_copy.append(blob.filename)
            elif status.st_size != blob.size:
                # The disk store's blob is never replaced by what the RAM disk
                # claims, unless the disk's copy is itself corrupt.
                if self._disk_blob_sound(relpath, blob.hex, status.st_size):
                    self._refuse(
                        name.qualified,
                        f"its manifest gives {relpath} {blob.size} bytes, but the disk store's"
                        f" copy has {status.st_size} and hashes to its name; it stays as it is",
                        VerificationFailed,
                    )
                    return None
                self.reporter.warn(
                    f"{self.disk.root / relpath} does not hash to its name: replaced by the"
                    f" RAM disk's copy of {name.qualified} if that one does"
                )
                to_copy.append(blob.filename)
        return _Model(manifest, to_copy)

    def _disk_blob_sound(self, relpath: str, hex_digest: str, size: int) -> bool:
        try:
            fd, _fstat = self.disk.open_regular(relpath)
        except OSError:
            return False
        try:
            nbytes, digest = hash_fd(fd, size)
        finally:
            os.close(fd)
        return nbytes == size and digest == hex_digest.lower()

    def _skipped(self, path: Path, kind: str) -> None:
        relpath = path.relative_to(self.ram.root).as_posix()
        self._refuse(relpath, f"{path} is {kind}, never followed or read")

    def _refuse(
        self, model: str, why: str, failure: type[OperationFailed] = OperationFailed
    ) -> None:
        self.result.refused.append(model)
        message = f"{model} not written back: {why}"
        self.reporter.warn(message)
        self.failures.append(failure(message))

    # ------------------------------------------------------------ writing

    def run(self) -> None:
        if not self.options.dry_run:
            stale = self.disk.clean_staging()
            if stale:
                self.reporter.warn(f"removed {len(stale)} temporary file(s) of an interrupted run")
        self.recorded = load_record(self.disk, self.reporter.warn)
        has_manifests = self.ram.dir_fd("manifests") is not None
        ram_store = Store(self.ram.root)
        self.in_ram = list(ram_store.iter_models(self._skipped)) if has_manifests else []
        models = [model for model in map(self._read, self.to_write()) if model is not None]
        self.result.skipped = sum(len(m.manifest.blobs) - len(m.to_copy) for m in models)
        free = self._free_bytes()
        sizes = {b.filename: b.size for m in models for b in m.manifest.blobs}
        planned: set[str] = set()
        for model in models:
            new = [name for name in model.to_copy if name not in planned]
            cost = sum(round_up(sizes[name], PAGE_SIZE) for name in new)
            cost += round_up(len(model.manifest.raw), PAGE_SIZE)
            if cost > free - self.reserve:
                self._refuse(
                    model.name,
                    f"{human(cost)} would leave less than the reserve of {human(self.reserve)}"
                    f" free on {self.disk.root} ({human(max(free, 0))} free)",
                    OutOfSpace,
                )
                continue
            free -= cost
            planned |= set(new)
            if self.options.dry_run:
                self.result.written.append(model.name)
                self.result.copied += [f"blobs/{name}" for name in new]
                self.result.bytes_copied += sum(sizes[name] for name in new)
                continue
            self._write(model, new, sizes)
        self._update_record()
        if not self.options.dry_run:
            self.disk.remove_staging_if_empty()
        self.reporter.finish(
            summary_line("wrote back", len(self.result.copied), self.result.bytes_copied, 0.0)
            + f" for {len(self.result.written)} model(s)"
        )

    def _free_bytes(self) -> int:
        info = os.statvfs(self.disk.root)
        return info.f_bavail * info.f_frsize

    def _write(self, model: _Model, new: list[str], sizes: dict[str, int]) -> None:
        digests = {blob.filename: blob.hex for blob in model.manifest.blobs}
        if new:
            self.disk.dir_fd("blobs", create=True)
        for name in new:
            relpath = f"blobs/{name}"
            try:
                # Always hashed, --verify or not: the RAM disk is any API client's,
                # and a blob under a sha256 name must hash to it.
                copy_blob(
                    self.disk,
                    self.ram.root / relpath,
                    relpath,
                    sizes[name],
                    expected_hex=digests[name],
                    source_tree=self.ram,
                )
            except CopyFailed as failure:
                kind = (
                    VerificationFailed
                    if isinstance(failure, HashMismatch)
                    else OutOfSpace
                    if failure.no_space
                    else OperationFailed
                )
                self._refuse(model.name, f"{relpath}: {failure.reason}", kind)
                return
            self.result.copied.append(relpath)
            self.result.bytes_copied += sizes[name]
        self.disk.install_bytes(model.manifest.relpath, model.manifest.raw)
        self.result.written.append(model.name)
        self.reporter.warn(
            f"wrote back {model.name}: {len(new)} blob(s), {human(sum(sizes[n] for n in new))}"
            f" to {self.disk.root}"
        )

    def _update_record(self) -> None:
        written_names = set(self.result.written)
        written = [name for name in self.in_ram if name.qualified in written_names]
        kept = self.recorded
        if self.options.forget_removed:
            in_ram = set(self.in_ram)
            kept = [name for name in self.recorded if name in in_ram]
            for name in self.recorded:
                if name not in in_ram:
                    self.result.forgotten.append(name.qualified)
                    self.reporter.warn(
                        f"forgot {name.qualified}: it is no longer in the RAM disk"
                        f" (still in {self.disk.root}, nothing deleted)"
                    )
        recorded = set(self.recorded)
        added = [name for name in written if name not in recorded]
        if (added or len(kept) != len(self.recorded)) and not self.options.dry_run:
            refused = write_record(self.disk, kept, added)
            if refused:
                self.reporter.warn(
                    f"the record of written-back models is full ({MAX_RECORD_BYTES} bytes):"
                    f" {len(refused)} model(s) written back to {self.disk.root} but not"
                    f" recorded, so not in `ollama list` after a reboot until named in the"
                    f" inventory or forgotten models make room, first {refused[0].qualified}"
                )

    def raise_failures(self) -> None:
        if not self.failures:
            return
        message = "\n".join(str(failure) for failure in self.failures)
        kinds = {type(failure) for failure in self.failures}
        for kind in (VerificationFailed, OutOfSpace):
            if kind in kinds:
                raise kind(message)
        raise OperationFailed(message)
