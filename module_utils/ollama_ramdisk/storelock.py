"""One run at a time per store: an flock at the store's root."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import stat
import time
from pathlib import Path
from typing import Callable

from .desttree import LOCK_NAME, DestTree, temp_name, unsafe_path
from .errors import InvalidOption, LockTimeout
from .owners import apply_owner

# flock works on a read-only descriptor: whoever may open the lock file may hold
# it and stop every run (and the refill before Ollama starts). Only its owner
# (and root) may open it.
LOCK_MODE = 0o600


def check_lock_timeout(timeout: object) -> float:
    """A lock timeout given as an option: a finite number of 0 or more seconds."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidOption(f"lock_timeout: expected a number of seconds, got {timeout!r}")
    if not math.isfinite(timeout) or timeout < 0:
        raise InvalidOption(f"lock_timeout: expected 0 or more seconds, got {timeout!r}")
    return float(timeout)


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
        FIFO planted there would hang a blocking open), mode 0600; given the
        owner only when this run created it."""
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
                        LOCK_NAME,
                        os.O_RDWR | os.O_CREAT | os.O_EXCL | flags,
                        LOCK_MODE,
                        dir_fd=root,
                    )
                    created = True
                except FileExistsError:
                    fd = os.open(LOCK_NAME, os.O_RDWR | flags, dir_fd=root)
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise unsafe_path(self.path, "is a symlink") from None
            raise OSError(error.errno, error.strerror, str(self.path)) from None
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            os.close(fd)
            kind = "has other hard links" if stat.S_ISREG(status.st_mode) else "is not a file"
            raise unsafe_path(self.path, f"{kind}; remove it")
        if created:
            apply_owner(fd, self.tree.owner, LOCK_MODE)
        elif stat.S_IMODE(status.st_mode) & 0o077 and not self.shared_if_present:
            return self._replace(fd, status)
        return fd

    def _replace(self, fd: int, status: os.stat_result) -> int | None:
        """A lock file others may open (older versions made it 0644) lets any of
        them hold the lock for ever, and a chmod would not take a lock they
        hold already: put a new lock file of the owner's alone in its place.
        Readers (``shared_if_present``) change nothing and keep the old one."""
        root = self.tree.root_fd
        try:
            named = os.stat(LOCK_NAME, dir_fd=root, follow_symlinks=False)
        except FileNotFoundError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (status.st_dev, status.st_ino):
            os.close(fd)  # another run replaced it meanwhile: take that one
            return self._open()
        temporary = temp_name(LOCK_NAME)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fresh = os.open(temporary, flags, LOCK_MODE, dir_fd=root)
        except OSError as error:
            os.close(fd)
            raise OSError(error.errno, error.strerror, str(self.path)) from None
        try:
            apply_owner(fresh, self.tree.owner, LOCK_MODE)
            os.rename(temporary, LOCK_NAME, src_dir_fd=root, dst_dir_fd=root)
        except BaseException:
            os.close(fresh)
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=root)
            raise
        finally:
            os.close(fd)
        return fresh

    def _wait_for(self, mode: int) -> None:
        if self._fd is None:
            raise AssertionError("the lock file is open before it is waited for")
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
