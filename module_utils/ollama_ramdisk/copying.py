"""Copying and hashing blobs: each byte read once, nothing partial ever under a
final name, and a source that grows, shrinks or lies about its size refused."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .desttree import TEMP_FLAGS, DestTree, discard, temp_name, write_all
from .owners import FILE_MODE, Owner, apply_owner
from .safeio import open_regular
from .sizes import MIB
from .stopping import check_stop, signals_deferred

if TYPE_CHECKING:
    import hashlib

# copy_file_range/sendfile move this much per call: one progress update each.
ZERO_COPY_CHUNK = 64 * MIB
# Read+hash+write buffer: large enough to amortise the system calls, small
# enough to stay in the CPU cache between the hash and the write.
HASH_CHUNK = 1 * MIB
# A tmpfs huge page. Into a RAM disk mounted huge=within_size a blob is written
# whole pages at a time: the kernel gives a file a 2 MiB page where a write
# reaches its end, which splice (64 KiB at a time) never does.
HUGE_PAGE = 2 * MIB

# Errors meaning "this kernel or file system pair cannot do that call".
_UNSUPPORTED = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}
NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}

Progress = Callable[[int], None]


def _no_progress(_nbytes: int) -> None:
    return None


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
    # Deferred: the temporary file is made and removed (or renamed) whole; a
    # signal still stops the copy at its next chunk (check_stop).
    with signals_deferred():
        parent_rel, _sep, name = relpath.rpartition("/")
        parent = tree.dir_fd(parent_rel)  # blobs/: an anchor, open for the whole run
        staging = tree.staging_fd()
        if parent is None:
            raise AssertionError("blobs/ is open for the whole run")
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
            dst = os.open(temp, TEMP_FLAGS, 0o600, dir_fd=staging)
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
                    huge_pages=tree.huge_pages,
                )
                os.rename(temp, name, src_dir_fd=staging, dst_dir_fd=parent)
            except BaseException:
                discard(temp, staging)
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
    huge_pages: bool,
) -> None:
    try:
        # Not the final size first (ftruncate): that got the same huge pages
        # but took 2-3x as long on kernel 6.18 (benchmarks/RESULTS.md).
        whole_pages = huge_pages and size >= HUGE_PAGE
        if expected_hex is None and not whole_pages:
            copied = copy_zero_copy(src, dst, size, progress)
        else:
            chunk = HUGE_PAGE if whole_pages else HASH_CHUNK
            copied, digest = copy_buffered(
                src, dst, size, progress, chunk=chunk, hashing=expected_hex is not None
            )
            if expected_hex is not None and digest != expected_hex.lower():
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
    write_all(dst, memoryview(data))
    return len(data)


def _sha256() -> hashlib._Hash:
    """A new sha256. hashlib loads OpenSSL: imported at the first hash, so that a
    populate with nothing to copy (or without --verify) starts without it."""
    import hashlib  # noqa: PLC0415

    return hashlib.sha256()


def copy_buffered(
    src: int,
    dst: int | None,
    size: int,
    progress: Progress = _no_progress,
    *,
    chunk: int = HASH_CHUNK,
    hashing: bool = True,
) -> tuple[int, str | None]:
    """Read ``src`` through a buffer of ``chunk`` bytes, writing each chunk to
    ``dst`` (unless None) and hashing it when asked (each byte read once);
    (bytes, hex digest or None).

    At most ``size + 1`` bytes are read: one more than expected tells a file
    that grew, and no source can make the copy run on."""
    digest = _sha256() if hashing else None
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    copied = 0
    while copied <= size:
        count = os.readv(src, [view[: min(chunk, size + 1 - copied)]])
        if count == 0:
            break
        data = view[:count]
        if digest is not None:
            digest.update(data)
        if dst is not None:
            write_all(dst, data)
        copied += count
        progress(count)
        check_stop(f"fd {src}")
    return copied, None if digest is None else digest.hexdigest()


def hash_fd(fd: int, limit: int, progress: Progress = _no_progress) -> tuple[int, str]:
    """(bytes, sha256 hex) of an open regular file, reading at most ``limit + 1``
    bytes: one more than the manifest says is enough to know it is wrong."""
    total, digest = copy_buffered(fd, None, limit, progress)
    if digest is None:
        raise AssertionError("copy_buffered hashes when it is given no destination")
    return total, digest


def hash_file(path: Path, limit: int, progress: Progress = _no_progress) -> tuple[int, str]:
    """hash_fd of a regular file, symlinks followed (a FIFO or a device behind a
    link is refused before the first read, so it can neither hang nor run on)."""
    fd, _fstat = open_regular(path)
    try:
        return hash_fd(fd, limit, progress)
    finally:
        os.close(fd)
