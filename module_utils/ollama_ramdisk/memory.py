"""How much memory this host (or its cgroup) can give to a RAM disk."""

from __future__ import annotations

from pathlib import Path

from .sizes import GIB

# cgroup v1 reports "no limit" as a huge page-aligned number.
UNLIMITED_THRESHOLD = 1 << 60


def _meminfo_total(meminfo: Path) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{meminfo}: no MemTotal line")


def _limit_files(proc_cgroup: Path, cgroup_root: Path) -> list[Path]:
    """The memory limit file of this process's cgroup and of each parent (v2, v1)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    files: list[Path] = []
    for line in lines:
        hierarchy, _sep, rest = line.partition(":")
        controllers, _sep, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, name = cgroup_root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = cgroup_root / "memory", "memory.limit_in_bytes"
        else:
            continue
        parts = [part for part in path.split("/") if part]
        # A parent's limit binds its children too: e.g. ollama.service under a
        # limited system.slice, or anything inside a limited container.
        files += [base.joinpath(*parts[:depth], name) for depth in range(len(parts), -1, -1)]
    return files


def _cgroup_limit(proc_cgroup: Path, cgroup_root: Path) -> int | None:
    """The lowest memory limit on the way from this process's cgroup to the root."""
    limits = []
    for candidate in _limit_files(proc_cgroup, cgroup_root):
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < UNLIMITED_THRESHOLD:
            limits.append(int(text))
    return min(limits, default=None)


def memory_total(
    meminfo: Path = Path("/proc/meminfo"),
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> int:
    """Physical memory, or the cgroup's limit when that is lower."""
    total = _meminfo_total(meminfo)
    limit = _cgroup_limit(proc_cgroup, cgroup_root)
    return min(total, limit) if limit else total


def default_reserve(mem_total: int) -> int:
    """Memory left to the OS, Ollama and non-mapped loads: max(4 GiB, 10%)."""
    return max(4 * GIB, mem_total // 10)
