"""Memory a RAM disk may take: MemTotal, or the cgroup's limit when that is lower."""

from __future__ import annotations

from pathlib import Path

import pytest
from ollama_ramdisk.memory import default_reserve, memory_total
from ollama_ramdisk.sizes import GIB

MEMTOTAL = 16 * GIB
V1_UNLIMITED = "9223372036854771712"


class FakeHost:
    """/proc/meminfo, /proc/self/cgroup and /sys/fs/cgroup in a tmp dir."""

    def __init__(self, root: Path, mem_total: int = MEMTOTAL) -> None:
        self.meminfo = root / "meminfo"
        self.proc_cgroup = root / "cgroup"
        self.cgroup_root = root / "sys-fs-cgroup"
        self.meminfo.write_text(
            f"MemTotal:       {mem_total // 1024} kB\n"
            "MemFree:          123456 kB\n"
            "Shmem:             65536 kB\n"
        )

    def cgroup(self, lines: str) -> None:
        self.proc_cgroup.write_text(lines)

    def limit(self, relative: str, value: str) -> None:
        path = self.cgroup_root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")

    def total(self) -> int:
        return memory_total(self.meminfo, self.proc_cgroup, self.cgroup_root)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


def test_without_cgroup_information_memtotal_counts(host: FakeHost) -> None:
    assert host.total() == MEMTOTAL


def test_a_cgroup_v2_limit_lower_than_memtotal_wins(host: FakeHost) -> None:
    host.cgroup("0::/system.slice/ollama.service\n")
    host.limit("system.slice/ollama.service/memory.max", str(6 * GIB))

    assert host.total() == 6 * GIB


def test_a_cgroup_v2_limit_at_the_root_of_a_container_namespace_wins(host: FakeHost) -> None:
    host.cgroup("0::/\n")
    host.limit("memory.max", str(3 * GIB))

    assert host.total() == 3 * GIB


def test_cgroup_v2_max_means_no_limit(host: FakeHost) -> None:
    host.cgroup("0::/user.slice\n")
    host.limit("user.slice/memory.max", "max")

    assert host.total() == MEMTOTAL


def test_a_cgroup_v1_limit_lower_than_memtotal_wins(host: FakeHost) -> None:
    host.cgroup(
        "12:pids:/docker/abc\n11:memory:/docker/abc\n10:cpu,cpuacct:/docker/abc\n0::/docker/abc\n"
    )
    host.limit("memory/docker/abc/memory.limit_in_bytes", str(4 * GIB))

    assert host.total() == 4 * GIB


def test_cgroup_v1_unlimited_means_no_limit(host: FakeHost) -> None:
    host.cgroup("5:memory:/\n")
    host.limit("memory/memory.limit_in_bytes", V1_UNLIMITED)

    assert host.total() == MEMTOTAL


def test_a_cgroup_limit_above_memtotal_does_not_raise_it(host: FakeHost) -> None:
    host.cgroup("0::/big\n")
    host.limit("big/memory.max", str(64 * GIB))

    assert host.total() == MEMTOTAL


def test_unreadable_limit_files_fall_back_to_memtotal(host: FakeHost) -> None:
    host.cgroup("0::/gone\n")

    assert host.total() == MEMTOTAL


def test_meminfo_without_memtotal_is_an_error_naming_the_file(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree: 1 kB\n")

    with pytest.raises(OSError, match="no MemTotal"):
        memory_total(meminfo, tmp_path / "absent", tmp_path)


def test_this_hosts_memory_is_read_from_proc() -> None:
    total = memory_total()

    assert 64 * 1024 * 1024 < total <= int(Path("/proc/meminfo").read_text().split()[1]) * 1024


@pytest.mark.parametrize(
    ("total", "reserve"),
    [
        (8 * GIB, 4 * GIB),
        (40 * GIB, 4 * GIB),
        (100 * GIB, 10 * GIB),
        (1024 * GIB, 1024 * GIB // 10),
    ],
)
def test_reserve_is_the_larger_of_4g_and_a_tenth(total: int, reserve: int) -> None:
    assert default_reserve(total) == reserve


def test_a_parent_cgroup_v2_limit_binds_a_child_without_one(host: FakeHost) -> None:
    host.cgroup("0::/system.slice/ollama.service\n")
    host.limit("system.slice/ollama.service/memory.max", "max")
    host.limit("system.slice/memory.max", str(5 * GIB))

    assert host.total() == 5 * GIB


def test_the_lowest_limit_on_the_way_to_the_root_wins_in_cgroup_v1(host: FakeHost) -> None:
    host.cgroup("11:memory:/docker/abc/system.slice/ollama.service\n")
    host.limit("memory/docker/abc/system.slice/ollama.service/memory.limit_in_bytes", str(1 << 62))
    host.limit("memory/docker/abc/system.slice/memory.limit_in_bytes", str(7 * GIB))
    host.limit("memory/docker/abc/memory.limit_in_bytes", str(2 * GIB))

    assert host.total() == 2 * GIB
