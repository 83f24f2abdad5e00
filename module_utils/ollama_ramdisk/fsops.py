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
import fcntl
import grp
import os
import pwd
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .errors import InvalidOption, LockTimeout, OperationFailed
from .identity import make_owned_directory
from .safeio import NotRegular, check_stop, open_regular
from .sizes import MIB
from .store import read_limited

if TYPE_CHECKING:
    import hashlib

LOCK_NAME = ".ollama-ramdisk.lock"
STAGING_NAME = ".ollama-ramdisk-tmp"
DIR_MODE = 0o755
FILE_MODE = 0o644

# copy_file_range/sendfile move this much per call: one progress update each.
ZERO_COPY_CHUNK = 64 * MIB
# Read+hash+write buffer: large enough to amortise the system calls, small
# enough to stay in the CPU cache between the hash and the write.
HASH_CHUNK = 1 * MIB

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Errors meaning "this kernel or file system pair cannot do that call".
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

Progress = Callable[[int], None]


def _no_progress(_nbytes: int) -> None:
    return None


# ---------------------------------------------------------------- owner


@dataclass(frozen=True)
class Owner:
    """Numeric owner for created files; -1 leaves that id unchanged (as chown)."""

    uid: int
    gid: int

    def differs(self, status: os.stat_result) -> bool:
        return (self.uid not in (-1, status.st_uid)) or (self.gid not in (-1, status.st_gid))


def parse_owner(text: str | None) -> Owner | None:
    """``user[:group]``, names or numeric ids; without a group, the user's own.

    Unknown names are InvalidOption, raised before anything is changed.
    """
    if text is None:
        return None
    if not isinstance(text, str) or not text.strip():
        raise InvalidOption(f"owner: expected USER[:GROUP], got {text!r}")
    user, _, group = text.strip().partition(":")
    uid, primary_gid = _lookup_user(user, text) if user else (-1, -1)
    gid = _lookup_group(group, text) if group else primary_gid
    return Owner(uid=uid, gid=gid)


def _lookup_user(user: str, text: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if user.isdigit():
            return int(user), -1
        raise InvalidOption(f"owner: no such user {user!r} (in {text!r})") from None
    return entry.pw_uid, entry.pw_gid


def _lookup_group(group: str, text: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise InvalidOption(f"owner: no such group {group!r} (in {text!r})") from None


def apply_owner(fd: int, owner: Owner | None, mode: int) -> None:
    """Mode and owner of a file or directory we just created (umask ignored)."""
    os.fchmod(fd, mode)
    if owner is not None:
        os.fchown(fd, owner.uid, owner.gid)


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


def _unsafe(path: Path, what: str) -> OperationFailed:
    return OperationFailed(f"{path}: {what}; refusing to write through it")


class DestTree:
    """A destination store root and the directories below it, opened without
    following symlinks. Directory descriptors are cached and closed by close()."""

    def __init__(self, root: Path, owner: Owner | None = None, option: str = "dest") -> None:
        self.root = Path(root)
        self.owner = owner
        self.option = option
        self._fds: dict[str, int] = {}
        # Copy workers look directories up at once: without this, two of them
        # open the same one and the descriptor not cached leaks, keeping even a
        # removed directory (and so the RAM disk's mount) busy.
        self._fds_lock = threading.RLock()

    def __enter__(self) -> DestTree:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

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
        """A descriptor of ``relpath`` (``blobs``, ``manifests/host/ns/model``).

        None when it (or a parent) does not exist and ``create`` is false;
        OperationFailed when a component is a symlink or not a directory.
        """
        with self._fds_lock:
            if relpath in self._fds:
                return self._fds[relpath]
            if not self.exists:
                if not create:
                    return None
                self.create_root()
                if not relpath:
                    return self.root_fd
            parent_rel, _, name = relpath.rpartition("/")
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
            return _unsafe(path, kind)
        return OSError(error.errno, error.strerror, str(path))

    # -- entries

    def split(self, relpath: str, create: bool = False) -> tuple[int | None, str]:
        parent_rel, _, name = relpath.rpartition("/")
        return self.dir_fd(parent_rel, create), name

    def lstat(self, relpath: str) -> os.stat_result | None:
        """The entry itself (a symlink is not followed); None when absent."""
        parent, name = self.split(relpath)
        if parent is None:
            return None
        try:
            return os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def readlink(self, relpath: str) -> str | None:
        parent, name = self.split(relpath)
        if parent is None:
            return None
        try:
            return os.readlink(name, dir_fd=parent)
        except (FileNotFoundError, OSError):
            return None

    def read_regular(self, relpath: str, limit: int) -> bytes | None:
        """A small regular file's bytes; None when absent, a symlink or not regular."""
        parent, name = self.split(relpath)
        if parent is None:
            return None
        try:
            fd, _ = open_regular(name, dir_fd=parent, follow=False)
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
        parent, name = self.split(relpath)
        if parent is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(self.root / relpath))
        path = str(self.root / relpath)
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
        fd = self.dir_fd(relpath)
        if fd is None:
            return []
        with os.scandir(fd) as entries:
            return sorted(entry.name for entry in entries)

    def unlink(self, relpath: str) -> None:
        """Remove a file or symlink (only the link: unlink never follows)."""
        parent, name = self.split(relpath)
        if parent is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)

    def remove_empty_dirs(self, relpath: str, stop_at: str) -> list[str]:
        """Remove ``relpath`` and its parents while empty, up to (excluding) ``stop_at``."""
        removed: list[str] = []
        while relpath and relpath != stop_at and (not stop_at or relpath.startswith(stop_at + "/")):
            parent, name = self.split(relpath)
            if parent is None:
                break
            try:
                os.rmdir(name, dir_fd=parent)
            except OSError:
                break  # not empty (or already gone): the chain stops here
            fd = self._fds.pop(relpath, None)
            if fd is not None:
                os.close(fd)
            removed.append(relpath)
            relpath = relpath.rpartition("/")[0]
        return removed

    # -- staging

    def staging_fd(self) -> int:
        fd = self.dir_fd(STAGING_NAME, create=True)
        assert fd is not None
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
        """Write ``data`` to a temporary file, then rename it to ``relpath``."""
        parent, name = self.split(relpath, create=True)
        assert parent is not None
        staging = self.staging_fd()
        temp = temp_name(name)
        fd = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=staging)
        try:
            try:
                _write_all(fd, memoryview(data))
                apply_owner(fd, self.owner, FILE_MODE)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, name, src_dir_fd=staging, dst_dir_fd=parent)
        except BaseException:
            _discard(temp, staging)
            raise

    def install_symlink(self, relpath: str, target: str) -> None:
        """Create a symlink under a temporary name, then rename it to ``relpath``."""
        parent, name = self.split(relpath, create=True)
        assert parent is not None
        staging = self.staging_fd()
        temp = temp_name(name)
        os.symlink(target, temp, dir_fd=staging)
        try:
            if self.owner is not None:
                os.chown(
                    temp, self.owner.uid, self.owner.gid, dir_fd=staging, follow_symlinks=False
                )
            os.rename(temp, name, src_dir_fd=staging, dst_dir_fd=parent)
        except BaseException:
            _discard(temp, staging)
            raise


def temp_name(final_name: str) -> str:
    """Unique per writer, so concurrent workers never share a temporary file."""
    return f"{final_name}.{os.urandom(6).hex()}.tmp"


def _discard(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


# ---------------------------------------------------------------- copying


class CopyFailed(Exception):
    """A blob could not be copied; ``reason`` says why in words for the journal."""

    def __init__(self, source: Path, reason: str, no_space: bool = False) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.no_space = no_space


class HashMismatch(CopyFailed):
    """The content does not hash to the blob's name."""


def copy_blob(
    tree: DestTree,
    source: Path,
    relpath: str,
    size: int,
    *,
    expected_hex: str | None = None,
    progress: Progress = _no_progress,
    fsync: bool = True,
    source_tree: DestTree | None = None,
) -> None:
    """Copy ``source`` to ``relpath`` under ``tree`` atomically.

    With ``expected_hex`` the content is hashed while it is copied (each byte
    read once) and a mismatch is never installed. Raises CopyFailed for
    anything that makes this one blob uncopyable (the caller may link it
    instead); the temporary file is always removed. With ``source_tree``,
    ``source`` is the same relpath under that tree, opened without following
    any link (a store any API client can write into, such as the RAM disk).
    """
    parent, name = tree.split(relpath)
    staging = tree.staging_fd()
    assert parent is not None
    temp = temp_name(name)
    try:
        if source_tree is not None:
            src, status = source_tree.open_regular(relpath)
        else:
            # Links in the source store are followed, with the store owner's
            # rights (identity.py): only to regular files that user could read.
            src, status = open_regular(source)
    except OSError as error:
        raise CopyFailed(source, f"cannot be read ({error.strerror})") from None
    try:
        actual = status.st_size
        if actual != size:
            raise CopyFailed(source, f"has {actual} bytes, the manifest says {size}")
        dst = os.open(temp, _TEMP_FLAGS, 0o600, dir_fd=staging)
        try:
            _fill(
                src,
                dst,
                source,
                size,
                expected_hex=expected_hex,
                progress=progress,
                fsync=fsync,
                owner=tree.owner,
            )
            os.rename(temp, name, src_dir_fd=staging, dst_dir_fd=parent)
        except BaseException:
            _discard(temp, staging)
            raise
        finally:
            _close_quietly(dst)
    finally:
        os.close(src)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _fill(
    src: int,
    dst: int,
    source: Path,
    size: int,
    *,
    expected_hex: str | None,
    progress: Progress,
    fsync: bool,
    owner: Owner | None,
) -> None:
    try:
        # The final size first: a tmpfs mounted huge=within_size gives a file
        # 2 MiB pages only where they fit within its size, and a file growing
        # write by write never has a whole one ahead of it (benchmarks/loads.py).
        os.ftruncate(dst, size)
        if expected_hex is None:
            copied = copy_zero_copy(src, dst, size, progress)
        else:
            copied, digest = copy_hashing(src, dst, size, progress)
            if digest != expected_hex.lower():
                # Safe to print: the run reads only what the store's owner can.
                raise HashMismatch(source, f"content hashes to sha256:{digest}")
        if copied != size:
            raise CopyFailed(source, f"yielded {copied} bytes, the manifest says {size}")
        apply_owner(dst, owner, FILE_MODE)
        if fsync:
            os.fsync(dst)
    except OSError as error:
        no_space = error.errno in NO_SPACE_ERRNOS
        reason = "no space left in the destination" if no_space else f"I/O error ({error})"
        raise CopyFailed(source, reason, no_space=no_space) from None


def copy_zero_copy(src: int, dst: int, size: int, progress: Progress = _no_progress) -> int:
    """Copy in the kernel: copy_file_range, else sendfile, else read/write."""
    copied = 0
    use_copy_file_range = hasattr(os, "copy_file_range")
    use_sendfile = True
    while copied < size:
        count = min(ZERO_COPY_CHUNK, size - copied)
        try:
            if use_copy_file_range:
                moved = os.copy_file_range(src, dst, count, copied)
            elif use_sendfile:
                moved = os.sendfile(dst, src, copied, count)
            else:
                moved = _read_write(src, dst, copied, count)
        except OSError as error:
            if error.errno not in _UNSUPPORTED or not (use_copy_file_range or use_sendfile):
                raise
            # Fall back one level and retry the same range.
            if use_copy_file_range:
                use_copy_file_range = False
            else:
                use_sendfile = False
            continue
        if moved == 0:
            break  # the source is shorter than its manifest says
        copied += moved
        progress(moved)
        check_stop(f"fd {src}")
    return copied


def _read_write(src: int, dst: int, offset: int, count: int) -> int:
    data = os.pread(src, min(count, HASH_CHUNK), offset)
    _write_all(dst, memoryview(data))
    return len(data)


def _sha256() -> hashlib._Hash:
    """A new sha256. hashlib loads OpenSSL: imported at the first hash, so that a
    populate with nothing to copy (or without --verify) starts without it."""
    import hashlib  # noqa: PLC0415

    return hashlib.sha256()


def copy_hashing(
    src: int, dst: int, size: int, progress: Progress = _no_progress
) -> tuple[int, str]:
    """Copy reading each byte once, hashing it on the way; (bytes, hex digest).

    At most ``size + 1`` bytes are read: one more than expected tells a file
    that grew, and no source can make the copy run on."""
    digest = _sha256()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    copied = 0
    while copied <= size:
        count = os.readv(src, [view[: min(HASH_CHUNK, size + 1 - copied)]])
        if count == 0:
            break
        chunk = view[:count]
        digest.update(chunk)
        _write_all(dst, chunk)
        copied += count
        progress(count)
        check_stop(f"fd {src}")
    return copied, digest.hexdigest()


def hash_fd(fd: int, limit: int, progress: Progress = _no_progress) -> tuple[int, str]:
    """(bytes, sha256 hex) of an open regular file, reading at most ``limit + 1``
    bytes: one more than the manifest says is enough to know it is wrong."""
    digest = _sha256()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    total = 0
    while total <= limit:
        count = os.readv(fd, [view[: min(HASH_CHUNK, limit + 1 - total)]])
        if count == 0:
            break
        digest.update(view[:count])
        total += count
        progress(count)
        check_stop(f"fd {fd}")
    return total, digest.hexdigest()


def hash_file(path: Path, limit: int, progress: Progress = _no_progress) -> tuple[int, str]:
    """hash_fd of a regular file, symlinks followed (a FIFO or a device behind a
    link is refused before the first read, so it can neither hang nor run on)."""
    fd, _ = open_regular(path)
    try:
        return hash_fd(fd, limit, progress)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- locking


class StoreLock:
    """An flock on ``LOCK_NAME`` at a store's root, outside manifests/ and blobs/.

    Exclusive for writers (the lock file is created). ``shared_if_present``
    is for readers that must change nothing at all: they wait for a writer
    when a lock file exists and create none when it does not.
    """

    def __init__(
        self,
        tree: DestTree,
        timeout: float,
        shared_if_present: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.tree = tree
        self.timeout = timeout
        self.shared_if_present = shared_if_present
        self.on_wait = on_wait
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.tree.root / LOCK_NAME

    def __enter__(self) -> StoreLock:
        self._fd = self._open()
        if self._fd is not None:
            mode = fcntl.LOCK_SH if self.shared_if_present else fcntl.LOCK_EX
            try:
                self._wait_for(mode)
            except BaseException:
                os.close(self._fd)
                self._fd = None
                raise
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def _open(self) -> int | None:
        """The lock file: a plain file with one link, opened without blocking (a
        FIFO planted there would hang a blocking open); given the owner only
        when this run created it."""
        if not self.tree.exists:
            return None
        root = self.tree.root_fd
        flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        created = False
        try:
            if self.shared_if_present:
                fd = os.open(LOCK_NAME, os.O_RDONLY | flags, dir_fd=root)
            else:
                try:
                    fd = os.open(
                        LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o600, dir_fd=root
                    )
                    created = True
                except FileExistsError:
                    fd = os.open(LOCK_NAME, os.O_RDWR | flags, dir_fd=root)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise _unsafe(self.path, "is a symlink") from None
            raise OSError(error.errno, error.strerror, str(self.path)) from None
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            os.close(fd)
            kind = "has other hard links" if stat.S_ISREG(status.st_mode) else "is not a file"
            raise _unsafe(self.path, f"{kind}; remove it")
        if created:
            apply_owner(fd, self.tree.owner, FILE_MODE)
        return fd

    def _wait_for(self, mode: int) -> None:
        assert self._fd is not None
        deadline = time.monotonic() + self.timeout
        pause = 0.01
        warned = False
        while True:
            try:
                fcntl.flock(self._fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"{self.path}: another ollama-ramdisk run held the lock"
                    f" for more than {self.timeout:g} s"
                )
            if not warned and self.on_wait is not None:
                self.on_wait(f"waiting for another run to release {self.path}")
                warned = True
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
            pause = min(pause * 2, 0.5)
