"""The mount a path lives on, from the kernel's mount table: where it is, what
it is, how full, and whether its files get 2 MiB pages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MOUNTINFO = Path("/proc/self/mountinfo")
# tmpfs allocates huge pages to a file under these (``advise`` only on madvise,
# which the copy does not do; ``deny`` and ``force`` are sysfs-only values).
_HUGE_OPTIONS = {"huge=always", "huge=within_size"}


@dataclass(frozen=True)
class MountInfo:
    """The file system a store lives on, as statvfs sees it."""

    path: str
    fstype: str
    source: str
    size_bytes: int
    used_bytes: int
    available_bytes: int
    options: tuple[str, ...] = ()

    @property
    def huge_pages(self) -> bool:
        """Files written here whole get 2 MiB pages (a tmpfs mounted huge=...)."""
        return self.fstype == "tmpfs" and not _HUGE_OPTIONS.isdisjoint(self.options)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "fstype": self.fstype,
            "size_bytes": self.size_bytes,
            "used_bytes": self.used_bytes,
            "available_bytes": self.available_bytes,
        }


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def _mount_entries(mountinfo: Path) -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
    """(mount point, fstype, source, super options) of each line of a mountinfo file."""
    for line in mountinfo.read_text().splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if len(fields) < separator + 3:
            continue
        options = tuple(fields[separator + 3].split(",")) if len(fields) > separator + 3 else ()
        yield (
            _unescape(fields[4]),
            fields[separator + 1],
            _unescape(fields[separator + 2]),
            options,
        )


def _contains(mount_point: str, path: str) -> bool:
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def find_mount(path: Path, mountinfo: Path = MOUNTINFO) -> MountInfo | None:
    """The mount holding ``path``: the longest mount point containing it (the last
    one listed when mounts are stacked), sized by statvfs."""
    resolved = os.path.realpath(path)
    try:
        entries = list(_mount_entries(mountinfo))
    except OSError:
        return None
    best: tuple[str, str, str, tuple[str, ...]] | None = None
    for entry in entries:
        if _contains(entry[0], resolved) and (best is None or len(entry[0]) >= len(best[0])):
            best = entry
    if best is None:
        return None
    usage = os.statvfs(resolved)
    return MountInfo(
        path=best[0],
        fstype=best[1],
        source=best[2],
        size_bytes=usage.f_blocks * usage.f_frsize,
        used_bytes=(usage.f_blocks - usage.f_bfree) * usage.f_frsize,
        available_bytes=usage.f_bavail * usage.f_frsize,
        options=best[3],
    )


def gets_huge_pages(path: Path, mountinfo: Path = MOUNTINFO) -> bool:
    """Whether files written whole under ``path`` get 2 MiB pages; False when unknown."""
    try:
        mount = find_mount(path, mountinfo)
    except OSError:
        return False
    return mount is not None and mount.huge_pages
