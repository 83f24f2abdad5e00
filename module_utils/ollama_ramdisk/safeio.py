"""Opening files a hostile user may have planted, and the pool of workers.

Every manifest, lock file and blob is opened here: without blocking (a FIFO
would otherwise hang the open), then checked through the same descriptor
(fstat), so that nothing can be swapped between the check and the use. A
size is believed only up to what the file system holding the file can hold:
a sparse file claiming 2^62 bytes is malformed, not work for years.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Sequence
from typing import Callable, TypeVar

from .defaults import MAX_JOBS
from .errors import InvalidOption
from .sizes import MAX_SIZE
from .stopping import enter_worker, signals_deferred

_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

T = TypeVar("T")
R = TypeVar("R")


class NotRegular(OSError):
    """The entry is a FIFO, device, socket or directory, not a file."""

    def __init__(self, path: str, mode: int) -> None:
        self.mode = mode
        self.kind = kind_of(mode)
        super().__init__(errno.EINVAL, f"not a regular file: {self.kind}", path)


def open_regular(
    path: str | os.PathLike[str], *, dir_fd: int | None = None, follow: bool = True
) -> tuple[int, os.stat_result]:
    """A read descriptor and its fstat, for regular files only.

    ``follow=False`` refuses a symlink at the last component (ELOOP). The
    descriptor stays non-blocking, which changes nothing for a regular file.
    """
    flags = _READ if follow else _READ | os.O_NOFOLLOW
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotRegular(os.fspath(path), status.st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd, status


def open_directory(path: str | os.PathLike[str]) -> int:
    """A descriptor of the directory ``path``, each component opened from ``/``
    without following links, so that a component swapped for a link is
    refused, never followed. The OSError names the path as given."""
    absolute = os.path.abspath(path)
    fd = os.open("/", _DIRECTORY)
    try:
        for name in [part for part in absolute.split("/") if part]:
            child = os.open(name, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    except OSError as error:
        os.close(fd)
        reason = error.strerror
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            reason = "not a directory, or a link on the way (give the real path)"
        raise OSError(error.errno, reason, os.fspath(path)) from None
    return fd


def kind_of(mode: int) -> str:
    """What a non-regular entry is, in words for a message."""
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def capacity(fd: int) -> int:
    """Bytes the file system holding ``fd`` has in all: no file there is larger."""
    info = os.fstatvfs(fd)
    return info.f_blocks * info.f_frsize


def implausible_size(fd: int, size: int) -> str | None:
    """Why ``size`` cannot be the size of a real file on fd's file system, or None."""
    if size > MAX_SIZE:
        return f"{size} bytes is more than any file can have"
    room = capacity(fd)
    if room and size > room:
        return f"{size} bytes is more than its file system holds ({room} bytes)"
    return None


# ---------------------------------------------------------------- workers

# Copies of many small blobs gain from a second worker; past four, a tmpfs fill
# is bound by memory bandwidth, not by per-file work (benchmarks/run.py, 7).


def default_jobs() -> int:
    """Parallel copies by default: one per CPU this process may run on, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_JOBS, cpus))


def check_jobs(jobs: object) -> int:
    """A job count given as an option: a whole number of at least 1."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InvalidOption(f"jobs: expected a whole number of at least 1, got {jobs!r}")
    return jobs


def parallel(work: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    """``work`` over ``items``, ``jobs`` at a time, results in order.

    Workers take the next item until none is left or one of them failed; the
    failure of the earliest item is raised once all have returned. The caller's
    thread only waits, in a section where signals are deferred (stopping.py):
    a signal makes every worker stop at its next chunk, and is raised here once
    all of them have returned, so that no thread goes on reading or writing
    after the run has ended. Plain threads: concurrent.futures imports logging,
    a few milliseconds of start-up in every run that copies
    (benchmarks/RESULTS.md, comparison 7).
    """
    if not items:
        return []
    results: list[R | None] = [None] * len(items)
    failures: list[tuple[int, BaseException]] = []
    pending = iter(range(len(items)))
    count = max(1, min(jobs, len(items)))
    running = 0
    changed = threading.Condition()
    abandoned = threading.Event()  # the caller failed: stop at the next chunk

    def worker() -> None:
        nonlocal running
        enter_worker(abandoned)
        try:
            while True:
                with changed:
                    index = None if failures else next(pending, None)
                if index is None:
                    return
                try:
                    results[index] = work(items[index])
                except BaseException as error:  # raised in the caller's thread, below
                    with changed:
                        failures.append((index, error))
        finally:
            with changed:
                running -= 1
                changed.notify_all()

    def wait_for_all() -> None:
        # Not Thread.join: one interrupted by a signal marks the thread as ended
        # though it still runs (CPython's bpo-45274 fix), and the next join
        # returns at once.
        with changed:
            while running:
                changed.wait()

    with signals_deferred():
        try:
            for _worker in range(count):
                thread = threading.Thread(target=worker, daemon=True)
                with changed:
                    running += 1
                try:
                    thread.start()
                except RuntimeError:  # no thread could be made: none to wait for
                    with changed:
                        running -= 1
                    raise
            wait_for_all()
        except BaseException:
            abandoned.set()
            wait_for_all()
            raise
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]
    return results  # type: ignore[return-value] - every slot was filled
