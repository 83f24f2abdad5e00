"""SIGINT or SIGTERM at a random moment of populate, verify or writeback: the
run stops within a second with 128 + the signal, and leaves nothing half-written.

Each trial starts the command in a process of its own, sends one signal after a
random delay drawn over the length of a whole run (start-up included), and then
checks the store it writes: every blob under a final name hashes to it, every
manifest is byte-identical to the source's with all of its blobs, the record is
whole JSON, no temporary file is left, and a second run finishes the work. The
seed is printed on failure; OLLAMA_RAMDISK_SIGNAL_SEED replays it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from ollama_ramdisk.desttree import STAGING_NAME
from storegen import SyntheticStore, make_store, weights

CORE = Path(__file__).resolve().parents[1] / "module_utils"
# 4 batches x 3 commands x 17 = 204 trials; `make compat` runs one batch on each
# other Python (OLLAMA_RAMDISK_SIGNAL_BATCHES=1: 51 trials), for its time.
BATCHES = int(os.environ.get("OLLAMA_RAMDISK_SIGNAL_BATCHES", "4"))
TRIALS_PER_BATCH = 17
STOP_BOUND = 1.0  # seconds from the signal to the process's end
RUN_BOUND = 30.0
ROOT_ENTRIES = {"blobs", "manifests", ".ollama-ramdisk.lock", "ollama-ramdisk-written-back.json"}

# Blobs of several sizes, so that a signal lands in copies of big and small
# files, in manifest installs and in the renames between them.
MODELS = {
    "big:1": [weights(32 << 20, "big")],
    "mid:1": [weights(8 << 20, "mid"), weights(4 << 20, "mid2")],
    **{f"small{n}:1": [weights(64 << 10, f"small{n}"), b"template"] for n in range(12)},
}
RAM_ONLY = ("big:1", "mid:1", "small0:1", "small1:1", "small2:1")


@dataclass
class Scene:
    source: SyntheticStore  # the disk store of populate and verify
    ram_template: Path  # a RAM disk holding models the disk store of writeback lacks
    work: Path


def _base_seed() -> int:
    return int(os.environ.get("OLLAMA_RAMDISK_SIGNAL_SEED", time.time_ns() % 2**32))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    base = tmp_path_factory.mktemp("signals")
    for directory in [base, *base.parents][:3]:
        directory.chmod(0o755)
    source = make_store(base / "disk", MODELS)
    ram = base / "ram-template"
    _run("populate", "--source", source.root, "--dest", ram, *MODELS, check=True)
    return Scene(source=source, ram_template=ram, work=base / "work")


# As the role's launcher starts the command: an isolated interpreter, the core on its path.
LAUNCHER = (
    f"import sys; sys.path.insert(0, {str(CORE)!r});"
    " from ollama_ramdisk.launch import run; sys.exit(run())"
)


def _command(*argv: object) -> list[str]:
    command, *rest = map(str, argv)
    return [sys.executable, "-I", "-c", LAUNCHER, command, "-q", *rest]


def _env() -> dict[str, str]:
    return dict(os.environ)


def _run(*argv: object, check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        _command(*argv), capture_output=True, text=True, env=_env(), timeout=RUN_BOUND,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _prepare(scene: Scene, command: str) -> tuple[list[object], Path, list[str]]:
    """A fresh target for one trial: (argv, the store written, models it must hold)."""
    shutil.rmtree(scene.work, ignore_errors=True)
    scene.work.mkdir()
    if command == "populate":
        dest = scene.work / "ram"
        return ["populate", "--source", scene.source.root, "--dest", dest, *MODELS], dest, []
    if command == "verify":
        dest = scene.work / "ram"
        shutil.copytree(scene.ram_template, dest, symlinks=True)
        return ["verify", "--jobs", "2", "--store", dest], dest, list(MODELS)
    kept = {name: layers for name, layers in MODELS.items() if name not in RAM_ONLY}
    disk = make_store(scene.work / "disk", kept)
    ram = scene.work / "ram"
    shutil.copytree(scene.ram_template, ram, symlinks=True)
    return ["writeback", "--source", disk.root, "--dest", ram], disk.root, list(kept)


def _assert_whole(scene: Scene, store: Path, at_least: list[str]) -> None:
    """Nothing half-written: what stands under a final name is complete."""
    if not store.exists():
        assert not at_least
        return
    assert set(os.listdir(store)) - {STAGING_NAME} <= ROOT_ENTRIES, sorted(os.listdir(store))
    if (store / STAGING_NAME).exists():
        assert not os.listdir(store / STAGING_NAME), "temporary files were left"
    blobs = store / "blobs"
    for entry in os.scandir(blobs) if blobs.exists() else []:
        assert entry.is_file(follow_symlinks=False), entry.path
        digest = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
        assert entry.name == f"sha256-{digest}", f"{entry.path} is not whole"
    manifests = store / "manifests"
    present = []
    for name, spec in scene.source.models.items():
        path = store / spec.manifest_relpath
        if path.exists():
            present.append(name)
            assert path.read_bytes() == spec.manifest_bytes(), path
            for layer in spec.blobs:
                assert (store / layer.relpath).is_file(), f"{name} stands without {layer.relpath}"
    found = sum(len(files) for _, _, files in os.walk(manifests)) if manifests.exists() else 0
    assert found == len(present), "a manifest under a name no model has"
    assert set(at_least) <= set(present)
    record = store / "ollama-ramdisk-written-back.json"
    if record.exists():
        json.loads(record.read_text())


def _threads_of(pid: int) -> str:
    """What each thread of a run that is slow to stop is doing: its state (R
    waits for a CPU, D for the kernel: a flush, an unlink), the kernel
    function it waits in, and the number of the system call it is in (or
    "running")."""
    seen = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            state = (task / "stat").read_text().rpartition(")")[2].split()[0]
            wchan = (task / "wchan").read_text() or "-"
            syscall = (task / "syscall").read_text().split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        seen.append(f"thread {task.name}: state {state}, wchan {wchan}, syscall {syscall}")
    return "; ".join(seen) or "no thread left"


def _one_full_run(scene: Scene, command: str) -> float:
    argv, _, _ = _prepare(scene, command)
    started = time.monotonic()
    done = _run(*argv)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(BATCHES))
@pytest.mark.parametrize("command", ["populate", "verify", "writeback"])
def test_a_signal_at_any_moment_stops_the_run_at_once_and_leaves_nothing_half_written(
    scene: Scene, command: str, batch: int
) -> None:
    length = min(_one_full_run(scene, command) for _ in range(3))
    started = time.monotonic()
    _run("--version", check=True)
    start_up = min(time.monotonic() - started, length / 2)
    seed = _base_seed() + batch
    rng = random.Random(f"{seed}:{command}")  # noqa: S311 - moments to replay, not secrets
    outcomes: dict[str, int] = {}
    for trial in range(TRIALS_PER_BATCH):
        signum = rng.choice([signal.SIGINT, signal.SIGTERM])
        # A third of the moments anywhere in a run, the rest after the interpreter's start.
        delay = rng.uniform(0.0 if trial % 3 == 0 else start_up, length)
        where = f"seed {seed}, {command}, trial {trial}: {signum.name} after {delay:.3f} s"
        argv, store, must_hold = _prepare(scene, command)
        process = subprocess.Popen(
            _command(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            sent = time.monotonic()
            process.send_signal(signum)
            held = ""
            try:
                try:
                    process.wait(timeout=STOP_BOUND)
                except subprocess.TimeoutExpired:
                    held = _threads_of(process.pid)
                    process.wait(timeout=RUN_BOUND - STOP_BOUND)
            except subprocess.TimeoutExpired:
                process.kill()
                pytest.fail(f"{where}: still running {RUN_BOUND:g} s after the signal; {held}")
            took = time.monotonic() - sent
            code = process.returncode
            err = process.stderr.read() if process.stderr else ""
            # During the interpreter's own start, before the launcher's first
            # line blocks the signals, Python's default action ends the process
            # before any work: killed by SIGTERM, or a KeyboardInterrupt
            # traceback (which Python wraps in a RuntimeError when it lands in a
            # class's creation) with no frame of the core in it.
            at_start = code == -signum or (
                code in (1, -signal.SIGINT)
                and "KeyboardInterrupt" in err
                and "ollama_ramdisk" not in err
            )
            assert code in (0, 128 + signum) or at_start, f"{where}: exit {code}\n{err}"
            if code != 0:
                assert took < STOP_BOUND, (
                    f"{where}: stopped {took:.2f} s after the signal; at {STOP_BOUND:g} s: {held}"
                )
            if code == 128 + signum:
                assert f"interrupted by {signum.name}" in err, f"{where}: {err}"
            outcome = "finished" if code == 0 else "killed at start" if at_start else "interrupted"
        else:
            assert process.returncode == 0, f"{where}: exit {process.returncode}"
            outcome = "finished first"
        finally:
            for stream in (process.stdout, process.stderr):
                if stream:
                    stream.close()
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        try:
            _assert_whole(scene, store, must_hold)
        except AssertionError as error:
            raise AssertionError(f"{where}: {error}") from None
        again = _run(*argv)
        assert again.returncode == 0, f"{where}: the next run failed: {again.stderr}"
        _assert_whole(scene, store, list(MODELS))
    # How many landed mid-work depends on the machine's load (5 to 14 of 17 were
    # seen): told, not asserted, since a bound on it would be a timing test.
    print(f"{command}, seed {seed}: {outcomes} (a whole run: {length:.2f} s)")


def _run_driven(driver: str, argv: list[object]) -> subprocess.CompletedProcess[str]:
    """``argv`` with ``--json``, run by ``driver`` (Python code that ends by
    calling the launcher) in place of the launcher's own line."""
    _python, _isolated, _c, _launcher, *arguments = _command(*argv)
    return subprocess.run(
        [sys.executable, "-I", "-c", driver, *arguments, "--json"], capture_output=True,
        text=True, env=_env(), timeout=RUN_BOUND, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def _assert_reported_interrupted(done: subprocess.CompletedProcess[str], signum: int) -> None:
    """128 + the signal, and exactly the report of an interrupted run on both streams."""
    assert done.returncode == 128 + signum, done.stderr
    assert done.stderr == f"ollama-ramdisk: error: interrupted by {signum.name}\n"
    assert json.loads(done.stdout) == {
        "error": f"interrupted by {signum.name}",
        "problems": [f"interrupted by {signum.name}"],
        "exit_code": 128 + signum,
    }


@pytest.mark.parametrize("inherited", ["default", "ignored"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_core_loads_stops_the_run_at_once_before_any_work(
    scene: Scene, signum: int, inherited: str
) -> None:
    # The signal comes after the launcher's first line and before the core has
    # loaded (here: sent by the process itself, between the two), the moment at
    # which an unguarded import would die with a traceback, be killed, or
    # ignore a SIGINT its parent ignored. "At once": the driver's next line
    # never runs, and neither does the core's import.
    argv, store, _ = _prepare(scene, "populate")
    ignore = "signal.signal(signal.SIGINT, signal.SIG_IGN);" if inherited == "ignored" else ""
    driver = (
        f"import os, signal, sys; {ignore} sys.path.insert(0, {str(CORE)!r});"
        " import ollama_ramdisk.launch as launch;"
        f" os.kill(os.getpid(), {int(signum)});"
        " os.write(2, b'went on after the signal');"
        " sys.exit(launch.run())"
    )
    _assert_reported_interrupted(_run_driven(driver, argv), signum)
    assert not store.exists(), "the run started work after the signal"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_reports_whole_and_ends_without_the_interpreters_finalization(
    scene: Scene, signum: int
) -> None:
    # The process signals itself in the first chunk of its first copy. Once the
    # run has cleaned up and reported, it ends at once: the exit handlers of
    # the interpreter's finalization never run, and the report, written
    # through buffered streams to pipes, still comes out whole.
    argv, store, _ = _prepare(scene, "populate")
    driver = f"""
import atexit, os, sys
sys.path.insert(0, {str(CORE)!r})
import ollama_ramdisk.launch as launch
import ollama_ramdisk.copying as copying

atexit.register(os.write, 2, b"finalized")
check_stop, sent = copying.check_stop, []

def signal_once(where):
    if not sent:
        sent.append(os.kill(os.getpid(), {int(signum)}))
    check_stop(where)

copying.check_stop = signal_once
sys.exit(launch.run())
"""
    _assert_reported_interrupted(_run_driven(driver, argv), signum)
    _assert_whole(scene, store, [])
