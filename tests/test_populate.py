"""populate: every rule of the contract, on real files and real tmpfs mounts.

The command runs in-process through ``cli`` where only its result matters,
and as a subprocess where a process must die or race (SIGKILL, two runs at
once) or where its system calls are the subject. A property test closes the
file: any sequence of runs (sets changing, models re-pulled, DEST damaged in
between) ends as the contract says, and each dry run foretells its real run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ollama_ramdisk.desttree import LOCK_NAME, STAGING_NAME
from ollama_ramdisk.errors import OutOfSpace
from ollama_ramdisk.populate import PopulateOptions, populate
from ollama_ramdisk.progress import Reporter
from ollama_ramdisk.store import Store
from ollama_ramdisk.verify import verify_store
from storegen import (
    LICENSE_APACHE,
    MALFORMED,
    Layer,
    ModelSpec,
    MountTmpfs,
    StoreFactory,
    SyntheticStore,
    compact_memory,
    huge_page_bytes,
    make_store,
    text,
    tmpfs_has_huge_pages,
    weights,
)
from waiting import wait_for_a_growing_temp_file

MIB = 1024 * 1024
HF = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
HOT = ["llama3.2:3b", "llama3.2:latest", "llama3.2:1b", HF]
COLD = ["qwen2.5-coder:7b"]
CLI = [sys.executable, "-m", "ollama_ramdisk.cli"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")


def _files(root: Path) -> dict[str, bytes]:
    """Every regular file under root (links followed) by relative path, with content."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and LOCK_NAME not in path.name
    }


def _state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root, links not followed: kind, content or target, mode, owner."""
    state: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        status = path.lstat()
        if path.is_symlink():
            what: object = ("link", os.readlink(path))
        elif path.is_dir():
            what = ("dir",)
        else:
            what = ("file", path.read_bytes())
        state[str(path.relative_to(root))] = (what, status.st_mode, status.st_uid, status.st_gid)
    return state


def _stamps(root: Path) -> dict[str, tuple[int, int, int]]:
    """Inode, mtime and ctime of root and every entry: any write, rename or chmod moves one."""
    stamps: dict[str, tuple[int, int, int]] = {}
    for path in sorted([root, *root.rglob("*")]):
        status = path.lstat()
        stamps[str(path.relative_to(root))] = (
            status.st_ino,
            status.st_mtime_ns,
            status.st_ctime_ns,
        )
    return stamps


def _holds(dest: Path, store: SyntheticStore, *names: str) -> bool:
    """DEST holds each model whole: manifest and every blob byte-identical."""
    for name in names:
        spec = store.models[name]
        if (dest / spec.manifest_relpath).read_bytes() != spec.manifest_bytes():
            return False
        for layer in spec.blobs:
            if (dest / layer.relpath).read_bytes() != store.blob_path(layer).read_bytes():
                return False
    return True


def _no_partial_file(dest: Path) -> None:
    """Every blob under its final name hashes to its name; every manifest's blobs exist."""
    for blob in (dest / "blobs").glob("sha256-*"):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name[len("sha256-") :]
    store = make_store(dest).store
    for name in store.iter_models():
        manifest = store.read_manifest(name)
        for blob in manifest.blobs:
            assert (dest / "blobs" / blob.filename).is_file(), f"{name} names a missing blob"


def _staging_is_empty(dest: Path) -> bool:
    staging = dest / STAGING_NAME
    return not staging.exists() or not any(staging.iterdir())


def _run(*argv: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, argv)], capture_output=True, text=True, timeout=timeout, check=False
    )


# ------------------------------------------------------------ the copy itself


def test_the_ram_disk_holds_a_byte_identical_copy_with_shared_blobs_copied_once(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"

    run = cli("populate", "-q", "--json", "--source", fleet.root, "--dest", dest, *HOT)

    assert run.code == 0, run.err
    distinct = fleet.distinct_blobs(*HOT)
    assert sorted(run.json["copied"]) == sorted(layer.relpath for layer in distinct.values())
    assert run.json["bytes_copied"] == sum(layer.size for layer in distinct.values())
    assert _holds(dest, fleet, *HOT)
    assert all(not (dest / layer.relpath).is_symlink() for layer in distinct.values())
    assert sorted(run.json["models_added"]) == sorted(fleet.models[n].qualified for n in HOT)
    assert _staging_is_empty(dest)


def test_a_second_run_changes_nothing_and_reads_no_blob(
    cli, store_factory: StoreFactory, tmpfs: MountTmpfs
) -> None:
    # Both stores on strictatime mounts: any read of a blob moves its atime.
    source = tmpfs("16m", name="disk", options="strictatime")
    built = store_factory(
        {"llama3.2:3b": [weights(2 * MIB, "w"), LICENSE_APACHE], "tiny:1": [4096]}, root=source
    )
    dest = tmpfs("16m", name="ram", options="strictatime") / "models"
    assert cli("populate", "-q", "--source", source, "--dest", dest, "llama3.2:3b").code == 0
    blobs = [*(source / "blobs").iterdir(), *(dest / "blobs").iterdir()]
    for blob in blobs:
        os.utime(blob, (1_000_000, 1_000_000))

    again = cli("populate", "-q", "--json", "--source", source, "--dest", dest, "llama3.2:3b")

    assert again.code == 0
    assert again.json["changed"] is False
    assert again.json["copied"] == again.json["linked"] == again.json["manifests"] == []
    assert again.json["skipped"] == len(built.models["llama3.2:3b"].blobs)
    assert [blob.stat().st_atime for blob in blobs] == [1_000_000] * len(blobs)


def test_jobs_copy_in_parallel_to_the_same_result(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    serial, parallel = tmpfs("8m", name="serial") / "m", tmpfs("8m", name="parallel") / "m"
    argv = ["populate", "-q", "--json", "--source", fleet.root, "--cold", *COLD, *HOT]

    one = cli(*argv, "--dest", serial, "--jobs", 1)
    four = cli(*argv, "--dest", parallel, "--jobs", 4)

    assert one.code == four.code == 0
    assert _holds(parallel, fleet, *HOT)
    # The same entries, kinds, contents, link targets and modes.
    assert _state(serial) == _state(parallel)
    assert sorted(one.json["copied"]) == sorted(four.json["copied"])
    assert one.json["bytes_copied"] == four.json["bytes_copied"]


def _bytes_moved(trace: str, *calls: str) -> int:
    """Bytes the successful ``calls`` of an strace log returned (failed attempts are -1)."""
    total = 0
    for line in trace.splitlines():
        # With several copy threads a call is split: "call(... <unfinished ...>", then
        # "<... call resumed>...) = N"; the result is on the line that ends it.
        named = any(f" {call}(" in line or f"<... {call} resumed>" in line for call in calls)
        if named and "<unfinished ...>" not in line:
            result = int(line.rsplit("= ", 1)[1].split()[0])
            total += max(result, 0)
    return total


def test_without_verify_the_kernel_copies_and_with_verify_each_byte_is_read_once(
    store_factory: StoreFactory, tmpfs: MountTmpfs
) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    built = store_factory({"big:1": [weights(8 * MIB, "big")]})
    blob_bytes = sum(layer.size for layer in built.models["big:1"].blobs)
    traces = {}
    for mode in ("plain", "verify"):
        dest = tmpfs("16m", name=mode) / "models"
        trace = dest.parent.parent / f"{mode}.strace"
        extra = ["--verify"] if mode == "verify" else []
        command = [*CLI, "populate", "-q", "--source", built.root, "--dest", dest, *extra, "big:1"]
        syscalls = "trace=copy_file_range,sendfile,readv"
        subprocess.run(
            ["strace", "-f", "-qq", "-e", syscalls, "-o", trace] + [str(p) for p in command],
            check=True,
            capture_output=True,
        )
        traces[mode] = trace.read_text()
        assert _holds(dest, built, "big:1")

    # Without --verify every byte moves inside the kernel, none through a buffer.
    assert _bytes_moved(traces["plain"], "copy_file_range", "sendfile") == blob_bytes
    assert _bytes_moved(traces["plain"], "readv") == 0
    # With --verify the blob is read once, into the hash and the copy together.
    assert _bytes_moved(traces["verify"], "copy_file_range", "sendfile") == 0
    assert _bytes_moved(traces["verify"], "readv") == blob_bytes


# ------------------------------------------------------------ out of space


def test_a_set_larger_than_the_free_space_fails_before_writing_and_keeps_the_old_content(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    ramdisk = tmpfs("2m")
    dest = ramdisk / "models"
    assert cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b").code == 0
    before = _files(ramdisk)
    fleet.add("big:1", [3 * MIB])

    run = cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b", "big:1")

    assert run.code == 1
    assert "must be written but only" in run.err
    assert "big:1" in run.err
    assert _files(ramdisk) == before
    assert _staging_is_empty(dest)


class _FillsTheDiskWhenCopyingStarts(Reporter):
    """Another writer takes the space between populate's check and its copy."""

    def __init__(self, filler: Path) -> None:
        self.filler = filler

    def start(self, total_bytes: int, total_files: int) -> None:
        with self.filler.open("wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * MIB)
                    handle.flush()
            except OSError:
                pass


def test_running_out_of_space_while_copying_leaves_nothing_partial(
    fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    ramdisk = tmpfs("4m")
    dest = ramdisk / "models"
    populate(PopulateOptions(source=fleet.root, dest=dest, models=["llama3.2:1b"]))
    before = _files(dest)
    fleet.add("big:1", [weights(2 * MIB, "big")])
    reporter = _FillsTheDiskWhenCopyingStarts(ramdisk / "other-writer")

    with pytest.raises(OutOfSpace) as failure:
        populate(
            PopulateOptions(source=fleet.root, dest=dest, models=["llama3.2:1b", "big:1"]),
            reporter,
        )

    assert failure.value.exit_code == 1
    assert "big:1" in str(failure.value)
    assert _files(dest) == before
    assert _staging_is_empty(dest)
    _no_partial_file(dest)


# ------------------------------------------------------------ interrupted runs


def test_a_populate_killed_in_the_middle_of_a_blob_leaves_nothing_partial(
    store_factory: StoreFactory, tmpfs: MountTmpfs
) -> None:
    # A random MiB repeated: quick to make; both stores in RAM keep the test fast.
    big = text(os.urandom(MIB) * 256)
    disk = tmpfs("300m", name="disk")
    models = {"big:70b": [big, LICENSE_APACHE], "small:1b": [weights(MIB, "s")]}
    built = store_factory(models, root=disk / "store")
    dest = tmpfs("600m", name="ram") / "models"
    # --verify reads through user space: slow enough to be caught mid-blob.
    command = [*CLI, "populate", "-q", "--verify", "--jobs", "1", "--source", built.root,
               "--dest", dest]  # fmt: skip
    process = subprocess.Popen([str(part) for part in [*command, "big:70b", "small:1b"]])
    wait_for_a_growing_temp_file(dest, process, 8 * MIB)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert process.returncode == -signal.SIGKILL
    assert not (dest / big.relpath).exists()
    assert not (dest / built.models["big:70b"].manifest_relpath).exists()
    _no_partial_file(dest)

    completed = _run("populate", "--source", built.root, "--dest", dest, "big:70b", "small:1b")

    assert completed.returncode == 0, completed.stderr
    assert "removed 1 temporary file(s) left by an interrupted run" in completed.stderr
    assert _holds(dest, built, "big:70b", "small:1b")
    assert _staging_is_empty(dest)


def test_two_populates_at_once_wait_for_each_other_and_end_consistent(
    fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("16m") / "models"
    fleet.add("big:1", [text(os.urandom(MIB) * 6)])
    argv = ["populate", "--json", "-q", "--source", fleet.root, "--dest", dest, *HOT, "big:1"]
    command = [str(part) for part in [*CLI, *argv]]

    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    outputs = [first.communicate(timeout=120)[0], second.communicate(timeout=120)[0]]

    assert first.returncode == second.returncode == 0
    assert _holds(dest, fleet, *HOT, "big:1")
    assert _staging_is_empty(dest)
    # Serialised: one run copied everything, the other found it in place.
    copied = sorted(len(json.loads(out)["copied"]) for out in outputs)
    assert copied == [0, len(fleet.distinct_blobs(*HOT, "big:1"))]


# ------------------------------------------------------------ verify while copying


def test_a_corrupt_source_blob_is_not_installed_with_verify(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"
    bad = fleet.models["llama3.2:1b"].layers[0]
    fleet.corrupt(bad)

    run = cli(
        "populate", "-q", "--verify", "--source", fleet.root, "--dest", dest,
        "llama3.2:1b", "acme/embedder:v1",
    )  # fmt: skip

    assert run.code == 1
    assert bad.relpath in run.err
    assert "llama3.2:1b" in run.err
    assert not (dest / bad.relpath).exists()
    assert not (dest / fleet.models["llama3.2:1b"].manifest_relpath).exists()
    # The model whose blobs all verified is installed.
    assert _holds(dest, fleet, "acme/embedder:v1")
    assert _staging_is_empty(dest)


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_manifest_exits_2_naming_the_file_and_writes_nothing(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs, case: str
) -> None:
    ramdisk = tmpfs("8m")
    content, reason = MALFORMED[case]
    path = fleet.write_manifest("broken:1", content)

    run = cli(
        "populate", "--source", fleet.root, "--dest", ramdisk / "m", "llama3.2:1b", "broken:1"
    )

    assert run.code == 2
    assert f"{path}: " in run.err
    assert reason in run.err
    assert list(ramdisk.iterdir()) == []


def test_a_blob_shorter_than_its_manifest_says_exits_2_and_writes_nothing(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    ramdisk = tmpfs("8m")
    blob = fleet.blob_path(fleet.models["llama3.2:1b"].layers[0])
    os.truncate(blob, 7)

    run = cli("populate", "--source", fleet.root, "--dest", ramdisk / "m", "llama3.2:1b")

    assert run.code == 2
    assert str(blob) in run.err
    assert list(ramdisk.iterdir()) == []


def test_an_unknown_owner_exits_2_and_writes_nothing(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    ramdisk = tmpfs("8m")

    run = cli("populate", "--source", fleet.root, "--dest", ramdisk / "m", "--owner", "nobody-x")

    assert run.code == 2
    assert "no such user 'nobody-x'" in run.err
    assert list(ramdisk.iterdir()) == []


# ------------------------------------------------------------ what it creates


def test_owner_is_applied_to_everything_created_with_plain_modes(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"

    run = cli(
        "populate", "-q", "--source", fleet.root, "--dest", dest, "--owner", "4242:4343",
        "--cold", COLD[0], *HOT,
    )  # fmt: skip

    assert run.code == 0, run.err
    for path in [dest, *dest.rglob("*")]:
        status = path.lstat()
        assert (status.st_uid, status.st_gid) == (4242, 4343), path
        if path.is_symlink():
            continue
        expected = 0o755 if path.is_dir() else 0o644
        if path.name == ".ollama-ramdisk.lock":
            expected = 0o600  # only the owner may take it (test_security_local_users.py)
        assert status.st_mode & 0o7777 == expected, path


def test_cold_models_are_linked_to_the_source_and_take_no_space(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"

    run = cli("populate", "-q", "--json", "--source", fleet.root, "--dest", dest, "--cold", *COLD)

    assert run.code == 0, run.err
    spec = fleet.models[COLD[0]]
    assert (dest / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()
    for layer in spec.blobs:
        link = dest / layer.relpath
        assert link.is_symlink()
        assert Path(os.readlink(link)) == fleet.blob_path(layer)
    assert sorted(run.json["linked"]) == sorted(layer.relpath for layer in spec.blobs)
    assert run.json["copied"] == []


def test_symlinked_blobs_in_the_source_are_followed(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    # Some operators keep the weights on another disk and link them into the store.
    layer = fleet.models["llama3.2:1b"].layers[0]
    elsewhere = tmp_path / "other-disk" / layer.filename
    elsewhere.parent.mkdir()
    shutil.move(fleet.blob_path(layer), elsewhere)
    fleet.blob_path(layer).symlink_to(elsewhere)
    dest = tmpfs("8m") / "models"

    run = cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b")

    assert run.code == 0, run.err
    copy = dest / layer.relpath
    assert not copy.is_symlink()
    assert copy.read_bytes() == elsewhere.read_bytes()


# Where a link is planted (relative to DEST). One standing where populate
# writes a file is replaced by a rename, or removed, never opened; one on the
# way to a file (a directory), or the lock file, is refused before any change.
REPLACED_LINKS = {
    "blob": "blobs/{blob}",
    "manifest": "{manifest}",
    "stale temporary file": f"{STAGING_NAME}/{{blob}}.0123456789ab.tmp",
}
REFUSED_LINKS = {
    "blobs directory": "blobs",
    "manifests directory": "manifests",
    "model directory": "{manifest_dir}",
    "staging directory": STAGING_NAME,
    "lock file": LOCK_NAME,
}


def _plant(dest: Path, where: str, target: Path, fleet: SyntheticStore) -> Path:
    spec = fleet.models["llama3.2:1b"]
    relpath = where.format(
        blob=spec.layers[0].filename,
        manifest=spec.manifest_relpath,
        manifest_dir=spec.manifest_relpath.rpartition("/")[0],
    )
    link = dest / relpath
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside DEST that a planted link points into."""
    path = tmp_path / "victim"
    path.mkdir()
    (path / "file").write_bytes(b"precious")
    return path


@pytest.mark.parametrize("planted", list(REPLACED_LINKS))
def test_a_symlink_planted_as_a_file_is_replaced_never_written_through(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs, victim: Path, planted: str
) -> None:
    dest = tmpfs("8m") / "models"
    link = _plant(dest, REPLACED_LINKS[planted], victim / "file", fleet)

    run = cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b")

    assert run.code == 0, run.err
    assert {path.name: path.read_bytes() for path in victim.iterdir()} == {"file": b"precious"}
    assert _holds(dest, fleet, "llama3.2:1b")
    assert not link.is_symlink()
    assert _staging_is_empty(dest)


@pytest.mark.parametrize("planted", list(REFUSED_LINKS))
def test_a_symlink_planted_on_the_way_to_a_file_is_refused_before_any_change(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs, victim: Path, planted: str
) -> None:
    dest = tmpfs("8m") / "models"
    target = victim / "file" if planted == "lock file" else victim
    link = _plant(dest, REFUSED_LINKS[planted], target, fleet)
    before = _state(dest)

    run = cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b")

    assert run.code == 1
    assert f"{link}: is a symlink; refusing to write through it" in run.err
    assert {path.name: path.read_bytes() for path in victim.iterdir()} == {"file": b"precious"}
    # Only the lock file may have appeared: it is taken before DEST is surveyed.
    after = _state(dest)
    if planted != "lock file":
        after.pop(LOCK_NAME)
    assert after == before


def _relpaths(layers: dict[str, Layer]) -> set[str]:
    return {layer.relpath for layer in layers.values()}


def test_dry_run_reports_the_changes_and_makes_none(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    ramdisk = tmpfs("8m")
    dest = ramdisk / "models"
    assert cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b").code == 0
    # Neither a lock file nor the cleaning of a stale temporary file is allowed.
    (dest / LOCK_NAME).unlink()
    (dest / STAGING_NAME).mkdir()
    (dest / STAGING_NAME / "leftover.0123456789ab.tmp").write_bytes(b"half a blob")
    state, stamps = _state(ramdisk), _stamps(ramdisk)
    hot, cold, gone = "acme/embedder:v1", COLD[0], "llama3.2:1b"

    run = cli(
        "populate", "-q", "--json", "--dry-run", "--prune", "--verify", "--jobs", 2,
        "--owner", "4242:4343", "--source", fleet.root, "--dest", dest, "--cold", cold, hot,
    )  # fmt: skip

    assert run.code == 0, run.err
    assert run.json["dry_run"] is True
    assert run.json["changed"] is True
    assert run.json["models_added"] == [fleet.models[name].qualified for name in (hot, cold)]
    assert run.json["models_removed"] == [fleet.models[gone].qualified]
    assert set(run.json["copied"]) == _relpaths(fleet.distinct_blobs(hot))
    assert set(run.json["linked"]) == _relpaths(fleet.distinct_blobs(cold)) - set(
        run.json["copied"]
    )
    unused = _relpaths(fleet.distinct_blobs(gone)) - _relpaths(fleet.distinct_blobs(hot, cold))
    assert set(run.json["pruned"]) == {fleet.models[gone].manifest_relpath} | unused
    assert _state(ramdisk) == state
    assert _stamps(ramdisk) == stamps


# ------------------------------------------------------------ prune and fallback


def test_prune_removes_what_left_the_set_but_never_a_model_only_in_ram(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"
    assert cli("populate", "-q", "--source", fleet.root, "--dest", dest, *HOT).code == 0
    pulled = make_store(dest).add("user/pulled:7b", [weights(50_000, "pulled"), LICENSE_APACHE])

    run = cli("populate", "-q", "--json", "--prune", "--source", fleet.root, "--dest", dest,
              "llama3.2:1b")  # fmt: skip

    assert run.code == 0, run.err
    assert _holds(dest, fleet, "llama3.2:1b")
    for name in ("llama3.2:3b", HF):
        assert not (dest / fleet.models[name].manifest_relpath).exists()
    assert not (dest / fleet.models["llama3.2:3b"].layers[0].relpath).exists()
    assert run.json["ram_only"] == [pulled.qualified]
    assert (dest / pulled.manifest_relpath).read_bytes() == pulled.manifest_bytes()
    for layer in pulled.blobs:
        assert (dest / layer.relpath).read_bytes() == layer.content
    # LICENSE_APACHE is no longer used by the set but the RAM-only model still needs it.
    assert (dest / LICENSE_APACHE.relpath).exists()


def test_fallback_link_serves_what_does_not_fit_from_disk_and_succeeds(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("1m") / "models"
    fleet.add("big:1", [weights(2 * MIB, "big"), LICENSE_APACHE])

    run = cli("populate", "--json", "--fallback-link", "--source", fleet.root, "--dest", dest,
              "llama3.2:1b", "big:1")  # fmt: skip

    assert run.code == 0, run.err
    big = fleet.models["big:1"].layers[0]
    # Whole models first: the one that does not fit is served from disk entirely.
    in_ram = fleet.distinct_blobs("llama3.2:1b")
    expected = sorted(
        b.relpath for b in fleet.distinct_blobs("big:1").values() if b.hex not in in_ram
    )
    assert run.json["fallback"] == expected
    assert "does not fit in the RAM disk" in run.err
    assert Path(os.readlink(dest / big.relpath)) == fleet.blob_path(big)
    assert _holds(dest, fleet, "llama3.2:1b", "big:1")
    assert not (dest / fleet.models["llama3.2:1b"].layers[0].relpath).is_symlink()


def test_fallback_link_on_a_ram_disk_too_small_is_idempotent(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    ramdisk = tmpfs("1m")
    fleet.add("big:1", [weights(2 * MIB, "big")])
    argv = ["populate", "-q", "--json", "--fallback-link", "--source", fleet.root,
            "--dest", ramdisk / "models", "llama3.2:1b", "big:1"]  # fmt: skip
    first = cli(*argv)
    stamps = _stamps(ramdisk)

    foretold, again = cli(*argv, "--dry-run"), cli(*argv)

    # Ansible runs the same populate twice in a row: the second must report no change.
    assert first.code == foretold.code == again.code == 0
    assert first.json["changed"] is True
    assert again.json["fallback"] == first.json["fallback"] != []
    assert foretold.json["changed"] is again.json["changed"] is False
    assert again.json["copied"] == []
    assert _stamps(ramdisk) == stamps


def test_fallback_link_also_serves_a_blob_that_fails_verification_from_disk(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"
    bad = fleet.models["llama3.2:1b"].layers[0]
    fleet.corrupt(bad)

    run = cli("populate", "--json", "--verify", "--fallback-link", "--source", fleet.root,
              "--dest", dest, "llama3.2:1b", "acme/embedder:v1")  # fmt: skip

    # ExecStartPre must let Ollama start: the bad blob is what the disk store serves anyway.
    assert run.code == 0, run.err
    assert run.json["fallback"] == [bad.relpath]
    assert bad.relpath not in run.json["copied"]
    assert f"{bad.relpath} " in run.err
    assert "content hashes to sha256:" in run.err
    assert Path(os.readlink(dest / bad.relpath)) == fleet.blob_path(bad)
    assert _holds(dest, fleet, "llama3.2:1b", "acme/embedder:v1")


# ------------------------------------------------------------ resources


def _descriptors_under(root: Path) -> list[str]:
    """What this process holds open below root (a leak keeps a mount busy)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed already
        if target.startswith(f"{root}/"):
            found.append(target)
    return found


def test_parallel_copies_leave_no_descriptor_open(fleet: SyntheticStore, tmpfs: MountTmpfs) -> None:
    ramdisk = tmpfs("16m")
    # Many small blobs and many workers: they all look up the staging directory at once.
    fleet.add("many:1", [weights(1000 + index, f"many {index}") for index in range(32)])

    for attempt in range(40):  # the race is lost in some runs only
        dest = ramdisk / f"models{attempt}"
        populate(PopulateOptions(source=fleet.root, dest=dest, models=["many:1"], jobs=16))
        assert _holds(dest, fleet, "many:1")

    assert _descriptors_under(ramdisk) == []


# ------------------------------------------------------------ any sequence of runs

# Models drawing on a few shared layers, as real tags share licenses and weights.
SHARED = [
    weights(5000, "shared a"),
    weights(9000, "shared b"),
    text(b"c" * 4097),
    LICENSE_APACHE,
    text(b""),
]
SEQUENCE_MODELS = {
    "a:1": [SHARED[0], SHARED[3]],
    "a:2": [SHARED[0], SHARED[3]],
    "b:1": [SHARED[1], SHARED[3], SHARED[4]],
    "ns/c:1": [SHARED[2]],
    "hf.co/u/d:q": [SHARED[1], SHARED[2], SHARED[4]],
}
PULLED = "user/pulled:1"
DAMAGE = ["truncated blob", "deleted blob", "dangling link", "stale temporary file"]


@dataclass(frozen=True)
class Step:
    """One populate run, and what happened to the stores just before it."""

    hot: list[str]
    cold: list[str]
    prune: bool
    verify: bool
    jobs: int
    repull: str | None  # the source's model got new weights (ollama pull)
    damage: str | None  # something broke in DEST


@st.composite
def steps(draw: st.DrawFn) -> Step:
    names = st.sampled_from(list(SEQUENCE_MODELS))
    hot = draw(st.lists(names, unique=True, max_size=3))
    cold = [name for name in draw(st.lists(names, unique=True, max_size=3)) if name not in hot]
    return Step(
        hot=hot,
        cold=cold,
        prune=draw(st.booleans()),
        verify=draw(st.booleans()),
        jobs=draw(st.integers(min_value=1, max_value=3)),
        repull=draw(st.none() | names),
        damage=draw(st.none() | st.sampled_from(DAMAGE)),
    )


def _damage(dest: Path, source: SyntheticStore, step: Step, how: str) -> None:
    """Break one blob the step needs (a RAM-only model's blobs cannot be restored)."""
    if how == "stale temporary file":
        (dest / STAGING_NAME).mkdir(exist_ok=True)
        (dest / STAGING_NAME / "x.0123456789ab.tmp").write_bytes(b"half")
        return
    if not step.hot and not step.cold:
        return  # distinct_blobs() of no name means every model's
    needed = {layer.relpath for layer in source.distinct_blobs(*step.hot, *step.cold).values()}
    present = sorted(rel for rel in needed if os.path.lexists(dest / rel))
    if not present:
        return
    blob = dest / present[0]
    if how == "truncated blob" and not blob.is_symlink():
        os.truncate(blob, 1)
    elif how == "deleted blob":
        blob.unlink()
    elif how == "dangling link":
        blob.unlink()
        blob.symlink_to(dest.parent / "nowhere")


def _assert_applied(
    dest: Path, source: SyntheticStore, step: Step, pulled: ModelSpec | None
) -> None:
    """The contract after a successful run with these inputs."""
    assert _holds(dest, source, *step.hot)
    in_ram = {layer.relpath for layer in source.distinct_blobs(*step.hot).values()}
    for name in step.hot:
        assert not any((dest / layer.relpath).is_symlink() for layer in source.models[name].blobs)
    for name in step.cold:
        spec = source.models[name]
        assert (dest / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()
        for layer in spec.blobs:
            if layer.relpath not in in_ram:
                assert Path(os.readlink(dest / layer.relpath)) == source.blob_path(layer)
    kept = [pulled] if pulled else []
    for spec in kept:
        assert (dest / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()
        assert all((dest / layer.relpath).read_bytes() == layer.content for layer in spec.blobs)
    assert _staging_is_empty(dest)
    assert not [d for d in (dest / "manifests").rglob("*") if d.is_dir() and not any(d.iterdir())]
    if step.prune:
        specs = [source.models[name] for name in step.hot + step.cold] + kept
        manifests = {p for p in (dest / "manifests").rglob("*") if not p.is_dir()}
        assert manifests == {dest / spec.manifest_relpath for spec in specs}
        blobs = {layer.relpath for spec in specs for layer in spec.blobs}
        assert {str(path.relative_to(dest)) for path in dest.glob("blobs/*")} == blobs
    if step.hot or step.cold:
        checked = verify_store(Store(dest), [*step.hot, *step.cold])
        assert checked.ok, checked.to_dict()


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    return {
        **{key: value for key, value in result.items() if key not in ("seconds", "dry_run")},
        "pruned": sorted(result["pruned"]),
    }


@pytest.fixture
def sequence_ramdisk(tmpfs: MountTmpfs) -> Path:
    """One mount for all the examples of a property (mounting is slow)."""
    return tmpfs("64m", name="sequences")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(runs=st.lists(steps(), min_size=1, max_size=4), with_pulled=st.booleans())
def test_any_sequence_of_runs_ends_as_the_contract_says_and_dry_run_foretells_it(
    sequence_ramdisk: Path, runs: list[Step], with_pulled: bool
) -> None:
    for entry in sequence_ramdisk.iterdir():
        shutil.rmtree(entry)  # each example starts afresh
    source = make_store(sequence_ramdisk / "source", SEQUENCE_MODELS)
    dest = sequence_ramdisk / "models"
    pulled = None
    if with_pulled:
        pulled = make_store(dest).add(PULLED, [weights(3000, "pulled"), SHARED[3]])
    for number, step in enumerate(runs):
        if step.repull:
            source.add(step.repull, [weights(2000 + number, f"pull {number}"), SHARED[3]])
        if step.damage and dest.exists():
            _damage(dest, source, step, step.damage)
        options = {"source": source.root, "dest": dest, "models": step.hot, "cold": step.cold,
                   "prune": step.prune, "jobs": step.jobs}  # fmt: skip

        foretold = populate(PopulateOptions(**options, dry_run=True)).to_dict()
        done = populate(PopulateOptions(**options, verify=step.verify)).to_dict()

        assert _comparable(foretold) == _comparable(done)
        _assert_applied(dest, source, step, pulled)
        assert populate(PopulateOptions(**options)).changed is False


@pytest.mark.parametrize(("cpus", "expected"), [("0", 1), (f"0-{(os.cpu_count() or 1) - 1}", None)])
def test_the_default_job_count_follows_the_cpus_the_run_may_use(
    cpus: str, expected: int | None
) -> None:
    core = Path(__file__).resolve().parents[1] / "module_utils"
    done = subprocess.run(
        ["taskset", "-c", cpus, sys.executable, "-c",
         "from ollama_ramdisk.safeio import default_jobs; print(default_jobs())"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(core)},
    )  # fmt: skip
    wanted = expected or min(4, os.cpu_count() or 1)
    assert int(done.stdout) == wanted


# Where a tmpfs mounted huge=within_size gets 2 MiB pages (the role's rule).
needs_huge_pages = pytest.mark.skipif(
    not tmpfs_has_huge_pages(), reason="this kernel's tmpfs has no transparent huge pages"
)


@needs_huge_pages
@pytest.mark.parametrize("verify", [False, True])
def test_on_a_huge_within_size_tmpfs_the_weights_are_in_2_mib_pages(
    store_factory: StoreFactory, tmpfs: MountTmpfs, verify: bool
) -> None:
    built = store_factory({"llama3.2:3b": [weights(16 * MIB, "w"), LICENSE_APACHE]})
    dest = tmpfs("64m", options="huge=within_size") / "models"
    flags = ["--verify"] if verify else []
    compact_memory()

    filled = _run("populate", *flags, "--source", built.root, "--dest", dest, "llama3.2:3b")

    assert filled.returncode == 0, filled.stderr

    blob = dest / built.models["llama3.2:3b"].layers[0].relpath
    assert huge_page_bytes(blob) == 16 * MIB


@needs_huge_pages
@pytest.mark.parametrize("verify", [False, True])
def test_on_a_huge_tmpfs_blobs_of_odd_sizes_are_copied_exactly(
    store_factory: StoreFactory, tmpfs: MountTmpfs, verify: bool
) -> None:
    # Whole 2 MiB writes with a short last one, and blobs below one huge page.
    sizes = {"big": 5 * MIB + 4097, "page": 2 * MIB, "small": 2 * MIB - 1}
    built = store_factory({
        "llama3.2:3b": [weights(sizes["big"], "big"), weights(sizes["page"], "page")],
        "phi3:mini": [weights(sizes["small"], "small")],
    })  # fmt: skip
    dest = tmpfs("64m", options="huge=within_size") / "models"
    flags = ["--verify"] if verify else []

    filled = _run("populate", *flags, "--source", built.root, "--dest", dest,
                  "llama3.2:3b", "phi3:mini")  # fmt: skip

    assert filled.returncode == 0, filled.stderr
    for model in built.models.values():
        for layer in model.layers:
            copy = dest / layer.relpath
            assert not copy.is_symlink()
            assert copy.read_bytes() == (built.root / layer.relpath).read_bytes()
