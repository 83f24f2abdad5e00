#!/usr/bin/env python3
"""What filling a RAM disk costs for each page size the kernel can give a file.

    sudo .venv/bin/python benchmarks/pages.py              # 5 repeats
    sudo .venv/bin/python benchmarks/pages.py --repeat 3 --no-profile

One 1 GiB file, read into the page cache first, is written into a fresh tmpfs
by a plain read/write loop, as populate's copy writes it, with writes of one
size per row. Into a tmpfs mounted huge=within_size, kernel 6.14 and later
give a file folios of the size of its writes (up to 2 MiB; 2 MiB pages only
where a write covers a whole one); huge=never gives 4 KiB pages whatever the
writes. Each row says how long the fill took, which folios the kernel gave
(its shmem_alloc counters), how long a fresh process then takes to map the
file and touch each 4 KiB of it (as a loading engine does), and how much of it
that process mapped with 2 MiB entries (ShmemPmdMapped). With perf installed,
one fill of three rows is also profiled, and the functions that took the
most samples are listed: where the time of a slow fill goes.

Rows alternate within each repeat, each after a pause (--settle) so that
memory freed by the previous unmount is treated alike; one row instead runs
at once after the row before it, into the memory that row has just freed.
Needs root (mount).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import mounting

KIB = 1024
MIB = 1024 * KIB
DEFAULT_WORKDIR = Path("/var/tmp/ollama-ramdisk-bench/pages")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "pages.md"
FILE_SIZE = 1024 * MIB
THP = Path("/sys/kernel/mm/transparent_hugepage")
# (label, tmpfs huge=, write size, pause first): the second row runs at once
# after the first's unmount, into the 2 MiB pages it has just freed.
ROWS = (
    ("2 MiB writes (populate's copy)", "within_size", 2 * MIB, True),
    ("2 MiB writes, at once after freeing as much", "within_size", 2 * MIB, False),
    ("1 MiB writes", "within_size", 1 * MIB, True),
    ("256 KiB writes (cp -a's size)", "within_size", 256 * KIB, True),
    ("64 KiB writes (splice's size)", "within_size", 64 * KIB, True),
    ("1 MiB writes, huge=never", "never", 1 * MIB, True),
)
FILL = """
import os, sys, time
source, dest, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
buffer = bytearray(chunk)
view = memoryview(buffer)
started = time.perf_counter()
src = os.open(source, os.O_RDONLY)
dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
while True:
    count = os.readv(src, [buffer])
    if not count:
        break
    done = 0
    while done < count:
        done += os.write(dst, view[done:count])
os.close(src)
os.close(dst)
print(time.perf_counter() - started)
"""
TOUCH = """
import mmap, os, re, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
started = time.perf_counter()
total = sum(mapped[offset] for offset in range(0, len(mapped), 4096))
elapsed = time.perf_counter() - started
smaps = open("/proc/self/smaps").read()
entry = smaps[smaps.index(sys.argv[1]):]
print(elapsed, re.search(r"ShmemPmdMapped:\\s+(\\d+)", entry).group(1), total & 1)
"""


@dataclass
class Row:
    label: str
    huge: str
    chunk: int
    pause: bool
    fills: list[float] = field(default_factory=list)
    touches: list[float] = field(default_factory=list)
    pmd_mapped: list[int] = field(default_factory=list)
    folios: dict[str, int] = field(default_factory=dict)
    profile: list[tuple[str, str]] = field(default_factory=list)


def folio_counts() -> dict[str, int]:
    """The kernel's count of shmem folios allocated, per size (kernel 6.10+)."""
    counts: dict[str, int] = {}
    for stats in THP.glob("hugepages-*/stats/shmem_alloc"):
        counts[stats.parent.parent.name.removeprefix("hugepages-")] = int(stats.read_text())
    return counts


def fresh_tmpfs(workdir: Path, huge: str) -> AbstractContextManager[Path]:
    return mounting.fresh_tmpfs(workdir, f"size={2 * FILE_SIZE},huge={huge}", prefix="tmpfs-")


def make_source(workdir: Path) -> Path:
    source = workdir / "source-1g"
    if not source.exists() or source.stat().st_size != FILE_SIZE:
        partial = workdir / "source-1g.partial"
        with partial.open("wb") as out:
            for _ in range(FILE_SIZE // (64 * MIB)):
                out.write(os.urandom(64 * MIB))  # incompressible, as weights are
        partial.rename(source)
    return source


def warm(source: Path) -> None:
    with source.open("rb", buffering=0) as handle:
        while handle.read(8 * MIB):
            pass


def measure(row: Row, source: Path, workdir: Path) -> None:
    before = folio_counts()
    with fresh_tmpfs(workdir, row.huge) as point:
        dest = point / "blob"
        fill = subprocess.run([sys.executable, "-c", FILL, str(source), str(dest), str(row.chunk)],
                              capture_output=True, text=True, check=True)  # fmt: skip
        after = folio_counts()
        touch = subprocess.run([sys.executable, "-c", TOUCH, str(dest)],
                               capture_output=True, text=True, check=True)  # fmt: skip
    row.fills.append(float(fill.stdout))
    seconds, pmd_kib, _ = touch.stdout.split()
    row.touches.append(float(seconds))
    row.pmd_mapped.append(int(pmd_kib) * KIB)
    row.folios = {size: after[size] - before.get(size, 0) for size in after
                  if after[size] - before.get(size, 0)}  # fmt: skip


def profile(row: Row, source: Path, workdir: Path, perf: str) -> None:
    """The kernel functions with the most samples in one fill of this row."""
    with fresh_tmpfs(workdir, row.huge) as point:
        data = workdir / "perf.data"
        subprocess.run([perf, "record", "-q", "-o", str(data), "--", sys.executable, "-c", FILL,
                        str(source), str(point / "blob"), str(row.chunk)],
                       capture_output=True, check=True)  # fmt: skip
    report = subprocess.run(
        [perf, "report", "-i", str(data), "--stdio", "--no-children", "--sort", "sym"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    data.unlink(missing_ok=True)
    for line in report.stdout.splitlines():
        found = re.match(r"\s*([\d.]+%)\s+\[[k.]\]\s+(\S+)", line)
        if found and len(row.profile) < 2:
            row.profile.append((found.group(2), found.group(1)))


def render(rows: list[Row], repeat: int, settle: float) -> list[str]:
    kernel = re.match(r"[\d.]+", os.uname().release)
    lines = [
        "## Filling a RAM disk, by page size (`benchmarks/pages.py`)",
        "",
        f"A 1 GiB file from the page cache into a fresh tmpfs, median of {repeat}, "
        f"{settle:g} s pause before each fill, kernel {kernel and kernel.group(0).rstrip('.')}, "
        f"{os.cpu_count()} cores.",
        "",
        "| writes | fill | GiB/s | folios the kernel gave | map and touch | mapped with 2 MiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        fill = statistics.median(row.fills)
        by_size = sorted(row.folios.items(), key=lambda item: int(item[0].removesuffix("kB")))
        folios = ", ".join(f"{count} x {size}" for size, count in by_size) or "4 KiB pages"
        pmd = statistics.median(row.pmd_mapped) / FILE_SIZE
        lines.append(
            f"| {row.label} | {fill:.2f} s | {FILE_SIZE / fill / 1024**3:.2f} | {folios} "
            f"| {statistics.median(row.touches):.3f} s | {pmd:.0%} |"
        )
    profiled = [row for row in rows if row.profile]
    if profiled:
        lines += ["", "Where one fill's time goes (`perf record`, most sampled functions):", "",
                  "| writes | top functions (share of samples) |", "|---|---|"]  # fmt: skip
        for row in profiled:
            top = ", ".join(f"`{name}` {share}" for name, share in row.profile)
            lines.append(f"| {row.label} | {top} |")
    return [*lines, ""]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--no-profile", action="store_true", help="skip the perf profiles")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("pages: needs root (tmpfs mounts)")
    if not (THP / "shmem_enabled").exists():
        raise SystemExit("pages: this kernel's tmpfs has no transparent huge pages")
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = make_source(args.workdir)
    rows = [Row(*row) for row in ROWS]
    for _ in range(args.repeat):
        for row in rows:
            warm(source)
            if row.pause:
                time.sleep(args.settle)
            measure(row, source, args.workdir)
    perf = shutil.which("perf")
    if perf and not args.no_profile:
        for row in (rows[0], rows[2], rows[-1]):
            warm(source)
            time.sleep(args.settle)
            profile(row, source, args.workdir, perf)
    out = render(rows, args.repeat, args.settle)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(out))
    table_end = out.index("", 6)
    args.output.with_suffix(".summary.md").write_text("\n".join(out[4:table_end]) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
