"""populate: every rule of the contract, on real files and real tmpfs mounts.

The command runs in-process through ``cli`` where only its result matters,
and as a subprocess where a process must die or race (SIGKILL, two runs at
once) or where its system calls are the subject.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ollama_ramdisk.errors import OutOfSpace
from ollama_ramdisk.fsops import LOCK_NAME, STAGING_NAME
from ollama_ramdisk.populate import PopulateOptions, populate
from ollama_ramdisk.progress import Reporter
from storegen import (
    LICENSE_APACHE,
    MALFORMED,
    MountTmpfs,
    StoreFactory,
    SyntheticStore,
    make_store,
    text,
    weights,
)

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
    # A source on a strictatime mount: any read of a blob moves its atime.
    source = tmpfs("16m", name="disk", options="strictatime")
    built = store_factory(
        {"llama3.2:3b": [weights(2 * MIB, "w"), LICENSE_APACHE], "tiny:1": [4096]}, root=source
    )
    dest = tmpfs("16m", name="ram") / "models"
    assert cli("populate", "-q", "--source", source, "--dest", dest, "llama3.2:3b").code == 0
    blobs = list((source / "blobs").iterdir())
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

    one = cli("populate", "-q", "--source", fleet.root, "--dest", serial, "--jobs", 1, *HOT)
    four = cli("populate", "-q", "--source", fleet.root, "--dest", parallel, "--jobs", 4, *HOT)

    assert one.code == four.code == 0
    assert _files(serial) == _files(parallel)


def test_without_verify_the_kernel_copies_and_with_verify_each_byte_is_read_once(
    store_factory: StoreFactory, tmpfs: MountTmpfs
) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    built = store_factory({"big:1": [weights(8 * MIB, "big")]})
    blob_bytes = sum(layer.size for layer in built.models["big:1"].blobs)
    calls = {}
    for mode in ("plain", "verify"):
        dest = tmpfs("16m", name=mode) / "models"
        trace = dest.parent.parent / f"{mode}.strace"
        extra = ["--verify"] if mode == "verify" else []
        command = [*CLI, "populate", "-q", "--source", built.root, "--dest", dest, *extra, "big:1"]
        subprocess.run(
            ["strace", "-f", "-qq", "-e", "trace=copy_file_range,sendfile,readv", "-o", trace]
            + [str(part) for part in command],
            check=True,
            capture_output=True,
        )
        calls[mode] = trace.read_text()

    assert "copy_file_range(" in calls["plain"] or "sendfile(" in calls["plain"]
    assert "copy_file_range(" not in calls["verify"]
    # With --verify the blob is read once, into the hash and the copy together.
    read_bytes = sum(
        int(line.rsplit("=", 1)[1]) for line in calls["verify"].splitlines() if " readv(" in line
    )
    assert read_bytes == blob_bytes


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

    assert "big:1" in str(failure.value)
    assert _files(dest) == before
    assert _staging_is_empty(dest)
    _no_partial_file(dest)


# ------------------------------------------------------------ interrupted runs


def _wait_for_a_growing_temp_file(dest: Path, process: subprocess.Popen[bytes]) -> None:
    staging = dest / STAGING_NAME
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        temps = list(staging.glob("*.tmp")) if staging.is_dir() else []
        if any(temp.stat().st_size > 8 * MIB for temp in temps):
            return
        time.sleep(0.001)
    pytest.fail("no temporary file grew before populate ended")


def test_a_populate_killed_in_the_middle_of_a_blob_leaves_nothing_partial(
    store_factory: StoreFactory, tmpfs: MountTmpfs
) -> None:
    big = text(os.urandom(MIB) * 384)
    built = store_factory({"big:70b": [big, LICENSE_APACHE], "small:1b": [weights(MIB, "s")]})
    dest = tmpfs("800m") / "models"
    # --verify reads through user space: slow enough to be caught mid-blob.
    command = [*CLI, "populate", "-q", "--verify", "--source", built.root, "--dest", dest]
    process = subprocess.Popen([str(part) for part in [*command, "big:70b", "small:1b"]])
    _wait_for_a_growing_temp_file(dest, process)
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


@pytest.mark.parametrize("planted", ["blob", "blobs directory", "manifests directory"])
def test_a_symlink_planted_in_the_destination_is_never_written_through(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs, tmp_path: Path, planted: str
) -> None:
    dest = tmpfs("8m") / "models"
    dest.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    layer = fleet.models["llama3.2:1b"].layers[0]
    if planted == "blob":
        (dest / "blobs").mkdir()
        (victim / "file").write_bytes(b"precious")
        (dest / layer.relpath).symlink_to(victim / "file")
    else:
        (dest / planted.split(maxsplit=1)[0]).symlink_to(victim, target_is_directory=True)

    run = cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b")

    # Refused or replaced: either way nothing outside DEST changed.
    expected = {"file": b"precious"} if planted == "blob" else {}
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == expected
    if run.code == 0:
        assert _holds(dest, fleet, "llama3.2:1b")
    else:
        assert run.code == 1
        assert str(dest) in run.err


def test_dry_run_reports_the_changes_and_makes_none(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"
    assert cli("populate", "-q", "--source", fleet.root, "--dest", dest, "llama3.2:1b").code == 0
    before = _files(dest)

    run = cli("populate", "-q", "--json", "--dry-run", "--prune", "--source", fleet.root,
              "--dest", dest, "acme/embedder:v1")  # fmt: skip

    assert run.code == 0
    assert run.json["dry_run"] is True
    assert run.json["models_added"] == [fleet.models["acme/embedder:v1"].qualified]
    assert run.json["models_removed"] == [fleet.models["llama3.2:1b"].qualified]
    assert run.json["copied"]
    assert _files(dest) == before


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
