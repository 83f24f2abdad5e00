"""File operations under a destination store that never write through a symlink
and never leave anything partial under a final name.

The destination root is opened once as a directory descriptor; every path
below it is walked one component at a time with ``O_NOFOLLOW``, so a symlink
planted anywhere under it (``blobs`` pointing elsewhere, a blob pointing at
``/etc/shadow``) is refused or replaced, never followed. Files are written to
a staging directory at the root (same file system, outside ``manifests/`` and
``blobs/``, where Ollama would prune unknown files), then renamed into place:
a rename replaces a symlink at the final name instead of writing through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from .errors import InvalidOption, OperationFailed
from .identity import make_owned_directory
from .mounts import gets_huge_pages
from .owners import DIR_MODE, FILE_MODE, Owner, apply_owner
from .safeio import NotRegular, open_regular
from .stopping import signals_deferred
from .store import read_limited

LOCK_NAME = ".ollama-ramdisk.lock"
STAGING_NAME = ".ollama-ramdisk-tmp"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def check_disjoint(source: Path, dest: Path, option: str = "dest") -> None:
    """Neither store may hold the other: a copy into itself, or a prune of the source."""
    real_source = Path(os.path.realpath(source))
    real_dest = Path(os.path.realpath(dest))
    if real_dest == real_source:
        raise InvalidOption(f"{option}: {dest} is the source store {source} itself")
    if real_source in real_dest.parents:
        raise InvalidOption(f"{option}: {dest} lies inside the source store {source}")
    if real_dest in real_source.parents:
        raise InvalidOption(f"{option}: the source store {source} lies inside {dest}")


# ---------------------------------------------------------------- the tree


def unsafe_path(path: Path, what: str) -> OperationFailed:
    return OperationFailed(f"{path}: {what}; refusing to write through it")


class DestTree:
    """A destination store root and the directories below it, opened without
    following symlinks. The anchors (the root and the directories right below
    it: ``blobs``, ``manifests``, the staging directory) are opened once and
    closed by close(); a directory deeper down (a model's manifests) is opened
    for one operation and closed after it, so that the descriptors a run holds
    never grow with the number of models (a RAM disk flooded by ``ollama cp``
    would otherwise exhaust them)."""

    def __init__(self, root: Path, owner: Owner | None = None, option: str = "dest") -> None:
        self.root = Path(root)
        self.owner = owner
        self.option = option
        self._fds: dict[str, int] = {}
        # Copy workers look directories up at once: without this, two of them
        # open the same one and the descriptor not cached leaks, keeping even a
        # removed directory (and so the RAM disk's mount) busy.
        self._fds_lock = threading.RLock()
        self._huge_pages: bool | None = None

    def __enter__(self) -> DestTree:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    @property
    def huge_pages(self) -> bool:
        """Whether a file written whole here gets 2 MiB pages (asked once)."""
        if self._huge_pages is None:
            self._huge_pages = gets_huge_pages(self.root)
        return self._huge_pages

    # -- the root itself: never opened through a link (its owner could point it
    # anywhere), though the directories above it are the operator's choice

    @property
    def exists(self) -> bool:
        return "" in self._fds

    def open_root(self) -> bool:
        """Open the root if it exists; False when it does not."""
        if self.exists:
            return True
        try:
            self._fds[""] = os.open(self.root, _DIR_FLAGS)
        except FileNotFoundError:
            return False
        except OSError as error:
            # O_NOFOLLOW | O_DIRECTORY on a link gives ENOTDIR (ELOOP on some kernels).
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            if not os.path.islink(self.root):
                raise InvalidOption(f"{self.option}: {self.root} is not a directory") from None
            raise InvalidOption(
                f"{self.option}: {self.root} is a symlink; a store is never opened through"
                " a link: give the directory itself"
            ) from None
        return True

    def create_root(self) -> bool:
        """Create the root (its parent must exist); True when it was created here."""
        if self.open_root():
            return False
        try:
            os.mkdir(self.root, DIR_MODE)
        except FileExistsError:
            self.open_root()
            return False
        except PermissionError:
            # A run that works as the owner cannot create the store in a
            # directory only root may write (a mount point root owns): root
            # does that one step, and the directory is the owner's at once.
            if not make_owned_directory(self.root):
                raise
        self.open_root()
        apply_owner(self._fds[""], self.owner, DIR_MODE)
        return True

    @property
    def root_fd(self) -> int:
        return self._fds[""]

    # -- directories below the root

    def dir_fd(self, relpath: str, create: bool = False) -> int | None:
        """The cached descriptor of an anchor (``""``, ``blobs``, ``manifests``,
        the staging directory).

        None when it does not exist and ``create`` is false; OperationFailed
        when it is a symlink or not a directory.
        """
        if "/" in relpath:
            raise ValueError(f"{relpath}: not an anchor directory; use directory()")
        with self._fds_lock:
            if relpath in self._fds:
                return self._fds[relpath]
            if not self.exists:
                if not create:
                    return None
                self.create_root()
                if not relpath:
                    return self.root_fd
            parent_rel, _sep, name = relpath.rpartition("/")
            parent = self.dir_fd(parent_rel, create)
            if parent is None:
                return None
            fd = self._open_child(parent, relpath, name, create)
            if fd is not None:
                self._fds[relpath] = fd
            return fd

    def _open_child(self, parent: int, relpath: str, name: str, create: bool) -> int | None:
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as error:
            raise self._refusal(parent, relpath, name, error) from None
        # A concurrent creator may win: its directory is opened with the same checks.
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, DIR_MODE, dir_fd=parent)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as error:
            raise self._refusal(parent, relpath, name, error) from None
        apply_owner(fd, self.owner, DIR_MODE)
        return fd

    def _refusal(self, parent: int, relpath: str, name: str, error: OSError) -> Exception:
        path = self.root / relpath
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
            kind = "is a symlink" if stat.S_ISLNK(mode) else "is not a directory"
            return unsafe_path(path, kind)
        return OSError(error.errno, error.strerror, str(path))

    @contextlib.contextmanager
    def directory(self, relpath: str, create: bool = False) -> Iterator[int | None]:
        """A descriptor of any directory below the root, for the ``with`` block:
        an anchor's cached one, or one opened for the block and closed after it.
        None when it (or a parent) does not exist and ``create`` is false."""
        if "/" not in relpath:
            yield self.dir_fd(relpath, create)
            return
        fd = self._open_deep(relpath, create)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    def _open_deep(self, relpath: str, create: bool) -> int | None:
        """Open a directory below an anchor, one component at a time, closing
        each one on the way once its child is open."""
        parent_rel, _sep, name = relpath.rpartition("/")
        if "/" not in parent_rel:
            parent = self.dir_fd(parent_rel, create)
            return None if parent is None else self._open_child(parent, relpath, name, create)
        parent = self._open_deep(parent_rel, create)
        if parent is None:
            return None
        try:
            return self._open_child(parent, relpath, name, create)
        finally:
            os.close(parent)

    # -- entries

    @contextlib.contextmanager
    def parent_of(self, relpath: str, create: bool = False) -> Iterator[tuple[int | None, str]]:
        """(descriptor of relpath's directory, its last name) for the ``with``
        block; the directories on the way are opened (created with ``create``),
        None when one is missing."""
        parent_rel, _sep, name = relpath.rpartition("/")
        with self.directory(parent_rel, create) as parent:
            yield parent, name

    def lstat(self, relpath: str) -> os.stat_result | None:
        """The entry itself (a symlink is not followed); None when absent."""
        with self.parent_of(relpath) as (parent, name):
            if parent is None:
                return None
            try:
                return os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return None

    def readlink(self, relpath: str) -> str | None:
        with self.parent_of(relpath) as (parent, name):
            if parent is None:
                return None
            try:
                return os.readlink(name, dir_fd=parent)
            except (FileNotFoundError, OSError):
                return None

    def read_regular(self, relpath: str, limit: int) -> bytes | None:
        """A small regular file's bytes; None when absent, a symlink or not regular."""
        try:
            fd, _fstat = self.open_regular(relpath)
        except (FileNotFoundError, IsADirectoryError, NotRegular):
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                return None
            raise
        with os.fdopen(fd, "rb") as handle:
            return read_limited(handle, limit)

    def open_regular(self, relpath: str) -> tuple[int, os.stat_result]:
        """A regular file below the root, no link followed on the way: (fd, fstat).

        OSError (ELOOP for a link, NotRegular, ENOENT) when it is anything else."""
        path = str(self.root / relpath)
        with self.parent_of(relpath) as (parent, name):
            if parent is None:
                raise FileNotFoundError(errno.ENOENT, "no such file", path)
            try:
                return open_regular(name, dir_fd=parent, follow=False)
            except NotRegular as error:
                raise NotRegular(path, error.mode) from None
            except OSError as error:
                if error.errno == errno.ELOOP:
                    raise OSError(error.errno, "a symlink, never followed here", path) from None
                raise OSError(error.errno, error.strerror, path) from None

    def list_dir(self, relpath: str) -> list[str]:
        """Names in a directory below the root; empty when it does not exist."""
        with self.directory(relpath) as fd:
            if fd is None:
                return []
            with os.scandir(fd) as entries:
                return sorted(entry.name for entry in entries)

    def unlink(self, relpath: str) -> None:
        """Remove a file or symlink (only the link: unlink never follows)."""
        with self.parent_of(relpath) as (parent, name):
            if parent is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=parent)

    def remove_empty_dirs(self, relpath: str, stop_at: str) -> list[str]:
        """Remove ``relpath`` and its parents while empty, up to (excluding) ``stop_at``."""
        removed: list[str] = []
        while relpath and relpath != stop_at and (not stop_at or relpath.startswith(stop_at + "/")):
            with self.parent_of(relpath) as (parent, name):
                if parent is None:
                    break
                try:
                    os.rmdir(name, dir_fd=parent)
                except OSError:
                    break  # not empty (or already gone): the chain stops here
            with self._fds_lock:
                fd = self._fds.pop(relpath, None)
            if fd is not None:
                os.close(fd)
            removed.append(relpath)
            relpath = relpath.rpartition("/")[0]
        return removed

    # -- staging

    def staging_fd(self) -> int:
        fd = self.dir_fd(STAGING_NAME, create=True)
        if fd is None:
            raise AssertionError("dir_fd(create=True) gives a descriptor")
        return fd

    def stale_temp_files(self) -> list[str]:
        """Leftovers of an interrupted run (only ever files and links we wrote)."""
        fd = self.dir_fd(STAGING_NAME)
        if fd is None:
            return []
        with os.scandir(fd) as entries:
            names = [entry.name for entry in entries if not entry.is_dir(follow_symlinks=False)]
        return sorted(names)

    def clean_staging(self) -> list[str]:
        """Remove stale temporary files; call only while holding the lock."""
        stale = self.stale_temp_files()
        for name in stale:
            self.unlink(f"{STAGING_NAME}/{name}")
        return stale

    def remove_staging_if_empty(self) -> None:
        if self.dir_fd(STAGING_NAME) is not None:
            self.remove_empty_dirs(STAGING_NAME, "")

    # -- atomic installs

    def install_bytes(self, relpath: str, data: bytes, fsync: bool = True) -> None:
        """Write ``data`` to a temporary file, then rename it to ``relpath``
        (signals deferred: a temporary file is never left half-made)."""
        staging = self.staging_fd()
        with signals_deferred(), self.parent_of(relpath, create=True) as (parent, name):
            if parent is None:
                raise AssertionError("parent_of(create=True) gives a descriptor")
            temp = temp_name(name)
            fd = os.open(temp, TEMP_FLAGS, 0o600, dir_fd=staging)
            try:
                try:
                    write_all(fd, memoryview(data))
                    apply_owner(fd, self.owner, FILE_MODE)
                    if fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(temp, name, src_dir_fd=staging, dst_dir_fd=parent)
            except BaseException:
                discard(temp, staging)
                raise

    def install_symlink(self, relpath: str, target: str) -> None:
        """Create a symlink under a temporary name, then rename it to ``relpath``."""
        staging = self.staging_fd()
        with signals_deferred(), self.parent_of(relpath, create=True) as (parent, name):
            if parent is None:
                raise AssertionError("parent_of(create=True) gives a descriptor")
            temp = temp_name(name)
            os.symlink(target, temp, dir_fd=staging)
            try:
                if self.owner is not None:
                    os.chown(
                        temp, self.owner.uid, self.owner.gid, dir_fd=staging, follow_symlinks=False
                    )
                os.rename(temp, name, src_dir_fd=staging, dst_dir_fd=parent)
            except BaseException:
                discard(temp, staging)
                raise


def temp_name(final_name: str) -> str:
    """Unique per writer, so concurrent workers never share a temporary file."""
    return f"{final_name}.{os.urandom(6).hex()}.tmp"


def discard(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]
