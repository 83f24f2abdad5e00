#!/usr/bin/env python3
"""Benchmarks of ollama-ramdisk against the tools people use today, side by side.

    sudo .venv/bin/python benchmarks/run.py                # 2 GiB store, 5 repeats
    sudo .venv/bin/python benchmarks/run.py --quick        # tiny store, 1 repeat, seconds
    sudo make bench BENCH_ARGS="--quick"                   # the same through make

The figures of the last full run, and what they mean: benchmarks/RESULTS.md.

Seven comparisons, each timed as medians over repeated runs in one process, with
ratios against a baseline measured in the same run:

1. populate into a fresh tmpfs vs ``cp -a`` and ``rsync -a`` of the same store;
2. populate --verify vs ``sha256sum`` of the blobs followed by ``cp -a``;
3. verify vs ``sha256sum`` over the same blobs in the RAM disk;
4. a populate with nothing to do (100 models, 300 blobs) vs ``ollama-ramdisk
   --version``, and whether it opens any blob (it must only stat);
5. reading every blob from the RAM disk vs from the disk store with a cold
   page cache: the speed-up a model load sees;
6. writing the metrics (``status --prometheus``, what the metrics timer runs
   every minute: a stat of every blob) vs ``--version``, with ``verify`` of
   the same store beside it to show what hashing would cost instead;
7. populate of many small blobs (4 models of 96 MiB, 96 of 1 MiB: 202 blobs)
   vs ``cp -a``, where per-file work shows.

Every command runs as a subprocess, start-up included, as ``ExecStartPre``
runs it; each copy goes into a freshly mounted tmpfs. Needs root (mount,
drop_caches). The synthetic stores are cached under --workdir, which must be
on a disk, not a tmpfs.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mounting
import synth
from ollama_ramdisk.safeio import default_jobs
from ollama_ramdisk.sizes import human, parse_size
from ollama_ramdisk.tmpfs_options import local_huge_setting

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024**2
GIB = 1024**3
DEFAULT_WORKDIR = Path("/var/tmp/ollama-ramdisk-bench")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "results.md"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
READ_BUFFER = 4 * MIB
# The parallel rows' --jobs: the command's own default (one per CPU, at most 4).
DEFAULT_JOBS = default_jobs()
WARM_IMPORTS = ("hashlib", "ollama_ramdisk.populate", "ollama_ramdisk.verify")
# On a virtual machine, memory freed by the last unmount is handed back to the
# hypervisor after about two seconds (free page reporting), and writing into it
# again is several times slower than into memory still held: without a pause a
# run's speed would depend on how long the previous one took to clean up.
DEFAULT_SETTLE = 3.0
# Subprocesses see the same, predictable locale whatever the caller's, and may
# cache bytecode (as an installed package has it), in the workdir: see child_env.
CHILD_ENV = {**os.environ, "LC_ALL": "C"}
CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)


class BenchError(Exception):
    """A command failed or produced a wrong result: its figures mean nothing."""


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Sample:
    """One timed run: wall-clock seconds, and CPU seconds (user + system, all threads)."""

    wall: float
    cpu: float

    def __add__(self, other: Sample) -> Sample:
        return Sample(self.wall + other.wall, self.cpu + other.cpu)


@dataclass
class Row:
    """One command's timings.

    ``kind``: subject (what the target is about), baseline, other (another
    tool, compared too) or part (one step of a baseline made of two).
    """

    label: str
    command: str
    kind: str = "subject"
    nbytes: int | None = None
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None
    # A condition the row must meet besides its ratio (e.g. "opens no blob").
    problem: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(s.wall for s in self.samples) if self.samples else None

    @property
    def median_cpu(self) -> float | None:
        return statistics.median(s.cpu for s in self.samples) if self.samples else None


@dataclass
class Comparison:
    """A subject against a baseline; ratios are "speed" (baseline time / time) or "time"."""

    number: int
    title: str
    rows: list[Row]
    ratio_kind: str = "speed"
    baseline_name: str = ""
    target: tuple[str, float] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> Row:
        return next(row for row in self.rows if row.kind == "baseline")

    def row(self, label: str) -> Row:
        return next(row for row in self.rows if row.label == label)

    def ratio(self, row: Row) -> float | None:
        base, mine = self.baseline.median, row.median
        if not base or not mine:
            return None
        return base / mine if self.ratio_kind == "speed" else mine / base

    def met(self, row: Row) -> bool | None:
        ratio = self.ratio(row)
        if row.kind != "subject" or self.target is None or ratio is None:
            return None
        operator, value = self.target
        ok = {">=": ratio >= value, ">": ratio > value, "<": ratio < value}[operator]
        return ok and row.problem is None

    @property
    def failed(self) -> bool:
        return any(row.error for row in self.rows)


# ---------------------------------------------------------------- settings


@dataclass
class Settings:
    workdir: Path
    size: int
    repeat: int
    jobs: int
    cli: list[str]
    cold_cache: bool
    settle: float
    quick: bool
    only: set[int]
    output: Path
    command_line: str
    many_models: int = 100
    many_weights: int = 64 * 1024


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Run as root. The table is printed and written to --output.",
    )
    parser.add_argument("--size", default="2g", help="synthetic store size (SIZE, default 2g)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        help=f"--jobs of the parallel rows (default {DEFAULT_JOBS}, the command's default here)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=DEFAULT_WORKDIR,
        help=f"cache of synthetic stores and mount points, on a disk (default {DEFAULT_WORKDIR})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="results file (default benchmarks/out/results.md, ignored by git)",
    )
    parser.add_argument(
        "--cli",
        help="how to run ollama-ramdisk (default: as the role installs it, over this tree)",
    )
    parser.add_argument(
        "--cold-cache",
        action="store_true",
        help="drop the page cache before every run of comparisons 1-2 too (default: warm)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        help="seconds to pause before each run (default 3, --quick 0): see RESULTS.md",
    )
    parser.add_argument("--only", help="comparisons to run, e.g. 1,4 (default: all)")
    parser.add_argument(
        "--quick", action="store_true", help="a 16 MiB store and one run each: checks it all works"
    )
    args = parser.parse_args(argv)
    size = parse_size("16m" if args.quick else args.size, "--size")
    if size < 4 * MIB:
        parser.error("--size: at least 4m, so that every blob has content")
    if args.repeat < 1 or args.jobs < 1:
        parser.error("--repeat and --jobs must be at least 1")
    every = set(range(1, 8))
    only = {int(part) for part in args.only.split(",")} if args.only else every
    if not only <= every:
        parser.error("--only: comparisons are numbered 1 to 7")
    workdir = args.workdir.resolve()
    return Settings(
        workdir=workdir,
        size=size,
        repeat=1 if args.quick else args.repeat,
        jobs=args.jobs,
        cli=shlex.split(args.cli) if args.cli else default_cli(workdir),
        cold_cache=args.cold_cache,
        settle=args.settle if args.settle is not None else (0.0 if args.quick else DEFAULT_SETTLE),
        quick=args.quick,
        only=only,
        output=args.output,
        command_line=" ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
    )


# What the role installs as the command (roles/ollama_ramdisk/templates/
# ollama-ramdisk.j2): the host's Python in isolated mode, the core on its path.
LAUNCHER = """import sys

sys.path.insert(0, {core!r})

from ollama_ramdisk.cli import main  # noqa: E402

sys.exit(main())
"""
HOST_PYTHON = Path("/usr/bin/python3")  # the role's ollama_ramdisk_python


def launcher_python() -> Path:
    """The Python the launcher runs with: the host's, else this one."""
    return HOST_PYTHON if HOST_PYTHON.exists() else Path(sys.executable)


def default_cli(workdir: Path) -> list[str]:
    """The command as ExecStartPre runs it on a host: the role's launcher, run by
    the host's Python with -I (no environment, no user site), over this tree's core.
    A console script in a virtual environment starts slower (site, .pth files)."""
    launcher = workdir / "ollama-ramdisk"
    workdir.mkdir(parents=True, exist_ok=True)
    launcher.write_text(LAUNCHER.format(core=str(ROOT / "module_utils")))
    return [str(launcher_python()), "-I", str(launcher)]


# ---------------------------------------------------------------- primitives


def run(argv: Sequence[object]) -> tuple[Sample, str]:
    """Run a command to completion; its times and stdout. A failure raises."""
    command = [str(arg) for arg in argv]
    cpu_before = _cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=CHILD_ENV, check=False)
    elapsed = Sample(
        time.perf_counter() - start, _cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1].strip()
        raise BenchError(f"{Path(command[0]).name} exited {done.returncode}: {last}")
    return elapsed, done.stdout


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed_read(paths: Sequence[Path]) -> tuple[Sample, int]:
    """read_all in this process, with its times."""
    cpu_before = _cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    count = read_all(paths)
    wall = time.perf_counter() - start
    return Sample(wall, _cpu_seconds(resource.RUSAGE_SELF) - cpu_before), count


def can_drop_caches() -> bool:
    return os.access(DROP_CACHES, os.W_OK)


def drop_caches() -> None:
    """Write back, then drop clean page cache, dentries and inodes (tmpfs keeps its pages)."""
    os.sync()
    if can_drop_caches():
        DROP_CACHES.write_text("3\n")


def read_all(paths: Sequence[Path]) -> int:
    """Read files whole through one buffer, as a loader that does not map them; bytes read."""
    buffer = bytearray(READ_BUFFER)
    view = memoryview(buffer)
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while True:
                count = handle.readinto(view)
                if not count:
                    break
                total += count
    return total


# As the role mounts the RAM disk (ollama_ramdisk_huge: auto).
_HUGE_SETTING = local_huge_setting()
ROLE_HUGE = f",huge={_HUGE_SETTING}" if _HUGE_SETTING else ""


def fresh_tmpfs(parent: Path, size: int, huge: bool = True) -> AbstractContextManager[Path]:
    """A newly mounted tmpfs of ``size`` bytes (whole MiB), mounted as the role
    mounts the RAM disk (or with 4 KiB pages only: ``huge`` false, as
    ``ollama_ramdisk_huge: never``), unmounted on the way out."""
    size_mib = -(-size // MIB)
    return mounting.fresh_tmpfs(parent, f"size={size_mib}m,mode=0755{ROLE_HUGE if huge else ''}")


def tmpfs_size(store: synth.BuiltStore) -> int:
    """Room for the store's files page by page, with the margin a plan's headroom gives."""
    pages = sum(
        -(-size // 4096) * 4096 for size in [*store.blobs.values(), *store.manifests.values()]
    )
    return int(pages * 1.25) + 64 * MIB


# ---------------------------------------------------------------- checks


def check_copy(store: synth.BuiltStore, dest: Path, compare_bytes: bool) -> None:
    """Every file of the store stands in ``dest`` as a regular file of the same size."""
    for relpath, size in {**store.blobs, **store.manifests}.items():
        copy = dest / relpath
        if copy.is_symlink() or not copy.is_file():
            raise BenchError(f"{relpath} is not a regular file in the copy")
        if copy.stat().st_size != size:
            raise BenchError(f"{relpath}: {copy.stat().st_size} bytes in the copy, not {size}")
        if compare_bytes and not filecmp.cmp(store.root / relpath, copy, shallow=False):
            raise BenchError(f"{relpath} differs from the source")


def check_populated(output: str, store: synth.BuiltStore, changed: bool) -> dict[str, Any]:
    """populate --json said it copied every blob (fresh) or nothing (second run)."""
    result = json.loads(output)
    copied = set(result.get("copied", []))
    if result.get("changed") is not changed:
        raise BenchError(f"populate reported changed={result.get('changed')}, expected {changed}")
    expected = set(store.blobs) if changed else set()
    if copied != expected:
        raise BenchError(f"populate copied {len(copied)} blobs, expected {len(expected)}")
    return result


def check_sha256sum(output: str, count: int) -> None:
    """Each line's hash is the blob's name: the baseline really checked every blob."""
    lines = output.splitlines()
    if len(lines) != count:
        raise BenchError(f"sha256sum printed {len(lines)} lines for {count} blobs")
    for line in lines:
        digest, _, name = line.partition("  ")
        if not name.endswith(f"sha256-{digest}"):
            raise BenchError(f"sha256sum: {name} hashes to {digest}")


def check_verified(output: str, store: synth.BuiltStore) -> None:
    result = json.loads(output)
    if result.get("ok") is not True or result.get("bytes") != store.blob_bytes:
        raise BenchError(
            f"verify: ok={result.get('ok')}, bytes={result.get('bytes')} "
            f"(expected {store.blob_bytes}), corrupt={result.get('corrupt')}"
        )


# ---------------------------------------------------------------- the runner

Trial = Callable[[], Mapping[str, Sample]]


class Bench:
    """Runs the comparisons of one benchmark run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Compiled once, then loaded like an installed package's .pyc files.
        CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(settings.workdir / "pycache")
        self.mounts = settings.workdir / "mnt"
        self.mounts.mkdir(parents=True, exist_ok=True)
        self.fleet = synth.ensure_store(
            settings.workdir,
            f"fleet-{settings.size}",
            synth.fleet_layout(settings.size),
        )
        small = (
            synth.small_blobs_layout(1, 8, large_size=2 * MIB)
            if settings.quick
            else (synth.small_blobs_layout())
        )
        self.small = synth.ensure_store(settings.workdir, "small-blobs", small)
        self.many = synth.ensure_store(
            settings.workdir,
            f"many-{settings.many_models}",
            synth.many_layout(settings.many_models, settings.many_weights),
        )

    # -- helpers

    def cli(self, *arguments: object) -> list[object]:
        return [*self.settings.cli, *arguments]

    def populate_argv(self, store: synth.BuiltStore, dest: Path, *extra: object) -> list[object]:
        return self.cli(
            "populate", "--source", store.root, "--dest", dest, "--json", *extra, *store.models
        )

    def version(self) -> Mapping[str, Sample]:
        """The baseline of 4 and 6: the command's start-up alone."""
        return {"--version": run(self.cli("--version"))[0]}

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def prepare_cache(self, store: synth.BuiltStore | None = None) -> None:
        """Before each run reading the disk store (comparisons 1 and 2): every page
        of it in the page cache (the default), or none (--cold-cache).

        Warm means read again before every run, untimed: a kernel with proactive
        reclaim (DAMON) pages out a store read once within minutes, and the
        figures would then depend on how much of it a run found on disk.
        """
        if self.settings.cold_cache:
            drop_caches()
        else:
            read_all((store or self.fleet).blob_paths())

    def measure(self, comparison: Comparison, trials: Mapping[str, Trial]) -> Comparison:
        """Run every trial ``repeat`` times, in a rotating order so drift spreads evenly."""
        order = list(trials)
        for repeat in range(self.settings.repeat):
            shift = repeat % len(order)
            for label in order[shift:] + order[:shift]:
                self._measure_once(comparison, label, trials[label], repeat)
        return comparison

    def _measure_once(self, comparison: Comparison, label: str, trial: Trial, repeat: int) -> None:
        if comparison.row(label).error:
            return
        time.sleep(self.settings.settle)
        try:
            timings = trial()
        except (BenchError, OSError, subprocess.CalledProcessError, ValueError) as error:
            comparison.row(label).error = str(error)
            self.log(f"  [{comparison.number}] {label}: FAILED: {error}")
            return
        for name, sample in timings.items():
            comparison.row(name).samples.append(sample)
        shown = ", ".join(f"{name} {sample.wall:.3f} s" for name, sample in timings.items())
        self.log(f"  [{comparison.number}] run {repeat + 1}/{self.settings.repeat}: {shown}")

    # -- copying into a fresh tmpfs

    def copy_trial(
        self,
        tool: str,
        label: str,
        *extra: object,
        store: synth.BuiltStore | None = None,
        huge: bool = True,
    ) -> Trial:
        """A trial copying a store (the fleet's by default) into a new tmpfs with ``tool``."""

        def trial() -> Mapping[str, Sample]:
            self.prepare_cache(store)
            return {label: self.copy_into_fresh(tool, *extra, store=store, huge=huge)}

        return trial

    def copy_into_fresh(
        self,
        tool: str,
        *extra: object,
        store: synth.BuiltStore | None = None,
        huge: bool = True,
    ) -> Sample:
        store = store or self.fleet
        with fresh_tmpfs(self.mounts, tmpfs_size(store), huge=huge) as point:
            dest = point / "models"
            dest.mkdir()
            if tool == "populate":
                sample, output = run(self.populate_argv(store, dest, *extra))
                check_populated(output, store, changed=True)
            elif tool == "cp":
                sample, _ = run(["cp", "-a", f"{store.root}/.", dest])
            else:
                sample, _ = run(["rsync", "-a", f"{store.root}/", f"{dest}/"])
            check_copy(store, dest, compare_bytes=self.settings.quick)
        return sample

    def hash_then_copy(self) -> Mapping[str, Sample]:
        """The baseline of 2: sha256sum every source blob, then cp -a the store."""
        self.prepare_cache()
        paths = self.fleet.blob_paths()
        hashing, output = run(["sha256sum", "--", *paths])
        check_sha256sum(output, len(paths))
        copying = self.copy_into_fresh("cp")
        return {
            "sha256sum, then cp -a": hashing + copying,
            "sha256sum alone": hashing,
            "cp -a alone": copying,
        }

    # -- the five comparisons

    def populate_vs_copy(self) -> Comparison:
        return self._populate_vs_copy(1, "populate into a fresh tmpfs", self.fleet)

    def small_blobs_vs_copy(self) -> Comparison:
        store = self.small
        what = f"{len(store.models)} models / {len(store.blobs)} blobs, {human(store.total_bytes)}"
        return self._populate_vs_copy(7, f"populate many small blobs ({what})", store)

    def _populate_vs_copy(self, number: int, title: str, store: synth.BuiltStore) -> Comparison:
        """populate with its default options against cp -a of the same store."""
        size = store.total_bytes
        default = f"populate (default: --jobs {DEFAULT_JOBS} here)"
        comparison = Comparison(
            number,
            title,
            [
                Row(default, "ollama-ramdisk populate", nbytes=size),
                Row("populate --jobs 1", "ollama-ramdisk populate --jobs 1", kind="other",
                    nbytes=size),
                Row("cp -a", "cp -a DISK/. RAM", kind="baseline", nbytes=size),
                Row("rsync -a", "rsync -a DISK/ RAM/", kind="other", nbytes=size),
                Row("populate, 4 KiB pages", "ollama-ramdisk populate (ollama_ramdisk_huge: never)",
                    kind="other", nbytes=size),
                Row("cp -a, 4 KiB pages", "cp -a DISK/. RAM (ollama_ramdisk_huge: never)",
                    kind="other", nbytes=size),
                Row("dd, the largest blob", "dd bs=4M: the memory bandwidth one stream gets",
                    kind="other", nbytes=max(store.blobs.values())),
            ],
            baseline_name="cp",
            target=(">=", 0.95),
        )  # fmt: skip
        return self.measure(
            comparison,
            {
                default: self.copy_trial("populate", default, store=store),
                "populate --jobs 1": self.copy_trial(
                    "populate", "populate --jobs 1", "--jobs", 1, store=store
                ),
                "cp -a": self.copy_trial("cp", "cp -a", store=store),
                "rsync -a": self.copy_trial("rsync", "rsync -a", store=store),
                "populate, 4 KiB pages": self.copy_trial(
                    "populate", "populate, 4 KiB pages", store=store, huge=False
                ),
                "cp -a, 4 KiB pages": self.copy_trial(
                    "cp", "cp -a, 4 KiB pages", store=store, huge=False
                ),
                "dd, the largest blob": self.dd_trial(store),
            },
        )

    def dd_trial(self, store: synth.BuiltStore) -> Trial:
        """The limit a copy meets: one stream from the page cache into the tmpfs."""

        def trial() -> Mapping[str, Sample]:
            self.prepare_cache(store)
            largest = store.blob_paths()[0]
            with fresh_tmpfs(self.mounts, tmpfs_size(store)) as point:
                sample, _ = run(["dd", f"if={largest}", f"of={point / 'blob'}", "bs=4M",
                                 "status=none"])  # fmt: skip
            return {"dd, the largest blob": sample}

        return trial

    def verified_populate_vs_hash_and_copy(self) -> Comparison:
        jobs = self.settings.jobs
        size = self.fleet.total_bytes
        comparison = Comparison(
            2,
            "populate --verify vs checking then copying",
            [
                Row("populate --verify", "ollama-ramdisk populate --verify --jobs 1", nbytes=size),
                Row(
                    f"populate --verify --jobs {jobs}",
                    f"ollama-ramdisk populate --verify --jobs {jobs}",
                    nbytes=size,
                ),
                Row(
                    "sha256sum, then cp -a",
                    "sha256sum DISK/blobs/*; cp -a DISK/. RAM",
                    "baseline",
                    size,
                ),
                Row("sha256sum alone", "sha256sum DISK/blobs/*", "part", self.fleet.blob_bytes),
                Row("cp -a alone", "cp -a DISK/. RAM", "part", size),
            ],
            baseline_name="sha256sum + cp",
            target=(">", 1.0),
        )
        return self.measure(
            comparison,
            {
                "populate --verify": self.copy_trial(
                    "populate", "populate --verify", "--verify", "--jobs", 1
                ),
                f"populate --verify --jobs {jobs}": self.copy_trial(
                    "populate", f"populate --verify --jobs {jobs}", "--verify", "--jobs", jobs
                ),
                "sha256sum, then cp -a": self.hash_then_copy,
            },
        )

    def verify_vs_sha256sum(self) -> Comparison:
        jobs = self.settings.jobs
        store = self.fleet
        comparison = Comparison(
            3,
            "verify the RAM disk",
            [
                Row("verify", "ollama-ramdisk verify --jobs 1", nbytes=store.blob_bytes),
                Row(
                    f"verify --jobs {jobs}",
                    f"ollama-ramdisk verify --jobs {jobs}",
                    nbytes=store.blob_bytes,
                ),
                Row("sha256sum", "sha256sum RAM/blobs/*", kind="baseline", nbytes=store.blob_bytes),
            ],
            baseline_name="sha256sum",
        )
        with fresh_tmpfs(self.mounts, tmpfs_size(store)) as point:
            dest = point / "models"
            run(["cp", "-a", f"{store.root}/.", dest])

            def verify(jobs_: int) -> Trial:
                def trial() -> Mapping[str, Sample]:
                    sample, output = run(
                        self.cli("verify", "--store", dest, "--json", "--jobs", jobs_)
                    )
                    check_verified(output, store)
                    return {"verify" if jobs_ == 1 else f"verify --jobs {jobs_}": sample}

                return trial

            def sha256sum() -> Mapping[str, Sample]:
                paths = store.blob_paths(dest)
                sample, output = run(["sha256sum", "--", *paths])
                check_sha256sum(output, len(paths))
                return {"sha256sum": sample}

            trials = {
                "verify": verify(1),
                f"verify --jobs {jobs}": verify(jobs),
                "sha256sum": sha256sum,
            }
            return self.measure(comparison, trials)

    def noop_populate_vs_startup(self) -> Comparison:
        store = self.many
        what = f"{len(store.models)} models / {len(store.blobs)} blobs"
        comparison = Comparison(
            4,
            f"populate with nothing to do ({what})",
            [
                Row("populate (no-op)", "ollama-ramdisk populate (all in place)"),
                Row("--version", "ollama-ramdisk --version", kind="baseline"),
            ],
            ratio_kind="time",
            baseline_name="--version",
            target=("<", 2.0),
        )
        with fresh_tmpfs(self.mounts, tmpfs_size(store)) as point:
            dest = point / "models"
            dest.mkdir()
            try:
                _, output = run(self.populate_argv(store, dest))
                check_populated(output, store, changed=True)
            except BenchError as error:
                comparison.row("populate (no-op)").error = f"first populate: {error}"

            def noop() -> Mapping[str, Sample]:
                sample, output = run(self.populate_argv(store, dest))
                check_populated(output, store, changed=False)
                return {"populate (no-op)": sample}

            self.measure(comparison, {"populate (no-op)": noop, "--version": self.version})
            if not comparison.row("populate (no-op)").error:
                self.check_opens_no_blob(comparison, store, dest)
        return comparison

    def check_opens_no_blob(
        self, comparison: Comparison, store: synth.BuiltStore, dest: Path
    ) -> None:
        """Trace a no-op populate: opening a blob for reading breaks "only stat"."""
        if shutil.which("strace") is None:
            comparison.notes.append("strace is not installed: blob opens not checked.")
            return
        trace = self.settings.workdir / "noop.strace"
        argv = self.populate_argv(store, dest)
        run(["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", trace, *argv])
        opened = blob_opens(trace.read_text())
        trace.unlink()
        row = comparison.row("populate (no-op)")
        if opened:
            row.problem = f"opened {len(opened)} blob files, e.g. {opened[0]}"
            comparison.notes.append(
                f"The no-op populate opened {len(opened)} blob files: it must only stat."
            )
        else:
            comparison.notes.append(
                f"Traced with strace: the no-op populate opened none of the {len(store.blobs)} "
                "blob files of either store (it only stats them)."
            )

    def ram_vs_disk_read(self) -> Comparison:
        store = self.fleet
        size = store.blob_bytes
        comparison = Comparison(
            5,
            "read every blob (a model load)",
            [
                Row("from the RAM disk", "read RAM/blobs/* (4 MiB reads)", nbytes=size),
                Row(
                    "from the disk, cold cache",
                    "read DISK/blobs/* (4 MiB reads)",
                    kind="baseline",
                    nbytes=size,
                ),
            ],
            baseline_name="disk",
        )
        if not can_drop_caches():
            comparison.notes.append(
                f"{DROP_CACHES} is not writable here: the page cache was NOT dropped, "
                "so the disk figures are warm-cache figures."
            )
        with fresh_tmpfs(self.mounts, tmpfs_size(store)) as point:
            dest = point / "models"
            run(["cp", "-a", f"{store.root}/.", dest])

            def reader(label: str, root: Path) -> Trial:
                def trial() -> Mapping[str, Sample]:
                    drop_caches()
                    sample, count = timed_read(store.blob_paths(root))
                    if count != size:
                        raise BenchError(f"read {count} bytes, expected {size}")
                    return {label: sample}

                return trial

            trials = {
                "from the disk, cold cache": reader("from the disk, cold cache", store.root),
                "from the RAM disk": reader("from the RAM disk", dest),
            }
            return self.measure(comparison, trials)

    def metrics_vs_startup(self) -> Comparison:
        """What the metrics timer pays at every run (stat only), against the
        command's start-up and against the hashing check it must not be."""
        store = self.many
        what = f"{len(store.models)} models / {len(store.blobs)} blobs"
        comparison = Comparison(
            6,
            f"write the metrics ({what})",
            [
                Row("status --prometheus", "ollama-ramdisk status --prometheus FILE --state-dir"),
                Row("verify", "ollama-ramdisk verify (hashes every blob)", kind="other"),
                Row("--version", "ollama-ramdisk --version", kind="baseline"),
            ],
            ratio_kind="time",
            baseline_name="--version",
            target=("<", 2.0),
        )
        with fresh_tmpfs(self.mounts, tmpfs_size(store)) as point:
            dest, state = point / "models", point / "state"
            run(["cp", "-a", f"{store.root}/.", dest])
            state.mkdir()
            textfile = point / "ollama_ramdisk.prom"

            def status() -> Mapping[str, Sample]:
                argv = ["status", "--store", dest, "--state-dir", state, "--prometheus", textfile]
                sample, output = run(self.cli(*argv, "--json"))
                if len(json.loads(output)["models"]) != len(store.models):
                    raise BenchError("status did not list every model")
                return {"status --prometheus": sample}

            def verify() -> Mapping[str, Sample]:
                sample, output = run(self.cli("verify", "--store", dest, "--json"))
                check_verified(output, store)
                return {"verify": sample}

            trials = {"status --prometheus": status, "verify": verify, "--version": self.version}
            return self.measure(comparison, trials)

    def run_all(self) -> list[Comparison]:
        steps = {
            1: self.populate_vs_copy,
            2: self.verified_populate_vs_hash_and_copy,
            3: self.verify_vs_sha256sum,
            4: self.noop_populate_vs_startup,
            5: self.ram_vs_disk_read,
            6: self.metrics_vs_startup,
            7: self.small_blobs_vs_copy,
        }
        # Bytecode of everything the timed commands import, compiled before anything
        # is timed (populate imports its thread pool and hashlib only when it copies).
        run(self.cli("--version"))
        subprocess.run(
            [sys.executable, "-c", f"import {', '.join(WARM_IMPORTS)}"],
            env=CHILD_ENV,
            capture_output=True,
            check=False,
        )
        # The launcher's Python runs isolated (-I: no PYTHONPYCACHEPREFIX): its
        # bytecode lies beside the core, as on a host after its first run.
        compile_core = [str(launcher_python()), "-I", "-m", "compileall", "-q",
                        str(ROOT / "module_utils")]  # fmt: skip
        subprocess.run(compile_core, capture_output=True, check=False)
        results = []
        for number, step in steps.items():
            if number in self.settings.only:
                self.log(f"comparison {number}")
                results.append(step())
        return results


_OPEN_RE = re.compile(
    r'open(?:at2?)?\((?:[^,]+, )?"(?P<path>[^"]*)", (?P<flags>[A-Z_|]+)[^)]*\)\s*=\s*(?P<fd>-?\d+)'
)


def blob_opens(trace: str) -> list[str]:
    """Blob files a traced process opened with a real open (not O_PATH, not a directory)."""
    opened = []
    for match in _OPEN_RE.finditer(trace):
        flags = match.group("flags")
        if "O_PATH" in flags or "O_DIRECTORY" in flags or int(match.group("fd")) < 0:
            continue
        if re.search(r"/blobs/sha256-[0-9a-f]{64}$", match.group("path")):
            opened.append(match.group("path"))
    return opened


# ---------------------------------------------------------------- report


def seconds_text(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def rate_text(nbytes: int, seconds: float) -> str:
    rate = nbytes / seconds
    return f"{rate / GIB:.2f} GiB/s" if rate >= GIB else f"{rate / MIB:.0f} MiB/s"


def row_cells(comparison: Comparison, row: Row) -> list[str]:
    label = f"**{row.label}**" if row.kind == "subject" else row.label
    if row.error:
        return [
            label,
            f"`{row.command}`",
            "FAILED",
            "",
            "",
            "",
            "",
            "",
            row.error.replace("|", "/"),
        ]
    median = row.median or 0.0
    walls = [sample.wall for sample in row.samples]
    spread = f"{seconds_text(min(walls))} - {seconds_text(max(walls))}"
    cpu = seconds_text(row.median_cpu or 0.0)
    rate = rate_text(row.nbytes, median) if row.nbytes and median else ""
    ratio = comparison.ratio(row)
    if row.kind == "baseline":
        ratio_text = "baseline"
    elif ratio is None or row.kind == "part":
        ratio_text = ""
    else:
        ratio_text = f"{ratio:.2f}x {comparison.baseline_name}"
    target = ""
    if comparison.target and row.kind == "subject":
        operator, value = comparison.target
        target = f"{operator} {value:g}x"
    met = {True: "yes", False: "**no**", None: ""}[comparison.met(row)]
    if row.problem:
        met = f"**no**: {row.problem}"
    return [
        label,
        f"`{row.command}`",
        seconds_text(median),
        spread,
        cpu,
        rate,
        ratio_text,
        target,
        met,
    ]


def render(
    settings: Settings, comparisons: Sequence[Comparison], machine: Mapping[str, str], bench: Bench
) -> str:
    lines = [
        "## Results",
        "",
        f"- command: `{settings.command_line}`",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        *(f"- {key}: {value}" for key, value in machine.items()),
        f"- disk store: {store_text(bench.fleet)}; no-op store: {store_text(bench.many)}",
        f"- page cache: {cache_text(settings)}; pause before each run: {settings.settle:g} s",
        f"- figures: medians of {settings.repeat} run(s); ratios against the baseline "
        "of the same run (speed: baseline time / time; for 4 and 6, time / baseline time); "
        "CPU: median user + system seconds of the command, all threads",
        "",
        "| # | run | command | median | min - max | CPU | throughput | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for comparison in comparisons:
        lines.append(f"| **{comparison.number}** | *{comparison.title}* |" + " |" * 8)
        lines.extend(
            "| " + " | ".join(["", *row_cells(comparison, row)]) + " |" for row in comparison.rows
        )
        notes.extend(f"- {comparison.number}: {note}" for note in comparison.notes)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


# Rows compared like for like, beside the comparison's own baseline.
LIKE_FOR_LIKE = ("populate, 4 KiB pages", "cp -a, 4 KiB pages")


def render_summary(comparisons: Sequence[Comparison]) -> str:
    """The README's table: each subject row against its baseline, and the target."""
    lines = [
        "| # | what | ollama-ramdisk | baseline, same run | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for comparison in comparisons:
        base = comparison.baseline
        for row in comparison.rows:
            if row.kind != "subject" or row.error or not row.median or not base.median:
                continue
            ratio = comparison.ratio(row)
            target = ""
            if comparison.target:
                operator, value = comparison.target
                met = "met" if comparison.met(row) else "**missed**"
                target = f"{operator} {value:g}x, {met}"
            lines.append(
                f"| {comparison.number} | {comparison.title} | {row.label}: "
                f"{seconds_text(row.median)} | {base.label}: {seconds_text(base.median)} "
                f"| {ratio:.2f}x | {target} |"
            )
        mine, theirs = (next((r for r in comparison.rows if r.label == label), None)
                        for label in LIKE_FOR_LIKE)  # fmt: skip
        if mine and theirs and mine.median and theirs.median:
            lines.append(
                f"| {comparison.number} | the same, into a 4 KiB-page tmpfs (like for like) "
                f"| {seconds_text(mine.median)} | {seconds_text(theirs.median)} "
                f"| {theirs.median / mine.median:.2f}x | |"
            )
    return "\n".join(lines) + "\n"


def store_text(store: synth.BuiltStore) -> str:
    sizes = store.blobs.values()
    return (
        f"{human(store.total_bytes)}, {len(store.models)} models, {len(store.blobs)} blobs "
        f"({human(min(sizes))} to {human(max(sizes))})"
    )


def cache_text(settings: Settings) -> str:
    dropped = "dropped" if can_drop_caches() else "NOT dropped (drop_caches is not writable)"
    if settings.cold_cache:
        return f"{dropped} before every run"
    return f"warm for 1-2 (the store read again before every run), {dropped} before every run of 5"


def machine_facts(settings: Settings) -> dict[str, str]:
    """What the figures depend on: CPU, memory, kernel, Python, file system, tools."""
    cpu = _first_match(Path("/proc/cpuinfo"), r"^model name\s*:\s*(.+)$") or platform.processor()
    memory_kib = int(_first_match(Path("/proc/meminfo"), r"^MemTotal:\s*(\d+)") or 0)
    os_name = (
        _first_match(Path("/etc/os-release"), r'^PRETTY_NAME="?([^"\n]+)') or platform.system()
    )
    return {
        "machine": (
            f"{cpu}, {os.cpu_count()} cores, {memory_kib / 1024**2:.1f} GiB memory, "
            f"kernel {kernel_version()}, {os_name}, Python {platform.python_version()}"
        ),
        "disk store on": filesystem_of(settings.workdir),
        "tools": "; ".join(
            tool_version(argv) for argv in [*TOOL_VERSIONS, [*settings.cli, "--version"]]
        ),
    }


TOOL_VERSIONS = [["cp", "--version"], ["rsync", "--version"], ["sha256sum", "--version"]]


def kernel_version() -> str:
    """The kernel's version number, without the build's own suffix."""
    found = re.match(r"\d+(?:\.\d+)*", platform.release())
    return found.group(0) if found else platform.release()


def tool_version(argv: Sequence[str]) -> str:
    try:
        output = subprocess.run(list(argv), capture_output=True, text=True, check=False).stdout
    except OSError:
        return f"{argv[0]} (missing)"
    first = output.strip().splitlines()[0] if output.strip() else argv[0]
    return re.sub(r"\s+protocol version.*", "", re.sub(r"\s+", " ", first))


def filesystem_of(path: Path) -> str:
    """The file system type and device holding ``path`` (longest mount point prefix)."""
    best = ("", "?", "?")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        device, point, fstype = line.split()[:3]
        if (str(path) + "/").startswith(point.rstrip("/") + "/") and len(point) >= len(best[0]):
            best = (point, fstype, device)
    return f"{best[1]} ({best[2]})"


def _first_match(path: Path, pattern: str) -> str | None:
    try:
        match = re.search(pattern, path.read_text(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1).strip() if match else None


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks/run.py: needs root (it mounts tmpfs and drops caches)", file=sys.stderr)
        return 2
    if shutil.which("rsync") is None:
        print("benchmarks/run.py: rsync is not installed (apt-get install rsync)", file=sys.stderr)
        return 2
    settings.workdir.mkdir(parents=True, exist_ok=True)
    if filesystem_of(settings.workdir).startswith("tmpfs"):
        print(
            f"benchmarks/run.py: warning: {settings.workdir} is on tmpfs, not a disk",
            file=sys.stderr,
        )
    bench = Bench(settings)
    comparisons = bench.run_all()
    report = render(settings, comparisons, machine_facts(settings), bench)
    print(report)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(report)
    settings.output.with_suffix(".summary.md").write_text(render_summary(comparisons))
    print(f"written to {settings.output}", file=sys.stderr)
    return 1 if any(comparison.failed for comparison in comparisons) else 0


if __name__ == "__main__":
    sys.exit(main())
