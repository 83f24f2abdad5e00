"""writeback: models made in the RAM disk reach the disk store whole, or not at all.

Both stores are real directories (the disk store on a tmpfs where a test needs
it small); the RAM disk is written as Ollama would write it (blobs named by
their hash, a manifest), and by an attacker where a test says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ollama_ramdisk.desttree import STAGING_NAME
from storegen import MountTmpfs, StoreFactory, SyntheticStore, make_store, text, weights
from waiting import wait_for_a_growing_temp_file

MIB = 1024 * 1024
CORE = Path(__file__).resolve().parents[1] / "module_utils"
CLI = [sys.executable, "-m", "ollama_ramdisk.cli"]


def _ram_with(tmp: Path, built_disk: SyntheticStore, models: dict) -> SyntheticStore:
    """A RAM store holding the disk's models and ``models`` (made in RAM only)."""
    ram = make_store(tmp, models)
    for name, spec in built_disk.models.items():
        ram.add(name, list(spec.blobs))
    return ram


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every file and link with its content or target (the lock file is no content)."""
    return {
        str(path.relative_to(root)): os.readlink(path) if path.is_symlink() else path.read_bytes()
        for path in sorted(root.rglob("*"))
        if (path.is_symlink() or path.is_file()) and path.name != ".ollama-ramdisk.lock"
    }


@pytest.fixture
def stores(store_factory: StoreFactory, tmp_path: Path) -> tuple[SyntheticStore, SyntheticStore]:
    disk = store_factory({"llama3.2:3b": [weights(200_000, "l"), text("license")]}, name="disk")
    ram = _ram_with(
        tmp_path / "ram",
        disk,
        {"mine:1": [weights(300_000, "mine"), text("license")], "other/thing:v2": [b"small"]},
    )
    return disk, ram


def test_models_only_in_ram_are_written_back_byte_for_byte_and_only_once(cli, stores) -> None:
    disk, ram = stores
    before_ram = _tree(ram.root)

    first = cli("writeback", "--json", "--source", disk.root, "--dest", ram.root)
    second = cli("writeback", "--json", "--source", disk.root, "--dest", ram.root)

    assert first.code == 0, first.err
    assert sorted(first.json["written"]) == [
        "registry.ollama.ai/library/mine:1",
        "registry.ollama.ai/other/thing:v2",
    ]
    assert first.json["changed"] is True
    assert first.json["skipped"] == 1  # the license the disk store already had
    for name in ("mine:1", "other/thing:v2"):
        spec = ram.models[name]
        assert (disk.root / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()
        for blob in spec.blobs:
            assert (disk.root / blob.relpath).read_bytes() == (ram.root / blob.relpath).read_bytes()
    assert "wrote back registry.ollama.ai/library/mine:1" in first.err
    assert second.code == 0
    assert second.json["changed"] is False
    assert second.json["written"] == []
    assert _tree(ram.root) == before_ram
    assert not (disk.root / ".ollama-ramdisk-tmp").exists()


def test_a_dry_run_changes_nothing(cli, stores) -> None:
    disk, ram = stores
    before = _tree(disk.root)

    run = cli("writeback", "--json", "--dry-run", "--source", disk.root, "--dest", ram.root)

    assert run.code == 0
    assert run.json["dry_run"] is True
    assert len(run.json["written"]) == 2
    assert _tree(disk.root) == before


def test_a_blob_that_fails_its_hash_is_not_written_back_nor_its_model(cli, stores) -> None:
    disk, ram = stores
    bad = ram.models["mine:1"].blobs[0]
    ram.corrupt(bad)
    ram_before = _tree(ram.root)

    run = cli("writeback", "--json", "--verify", "--source", disk.root, "--dest", ram.root)

    assert run.code == 1
    assert "content hashes to sha256:" in run.err
    assert not (disk.root / bad.relpath).exists()
    assert not (disk.root / ram.models["mine:1"].manifest_relpath).exists()
    # The other model is still written back, and the RAM copy is untouched.
    assert (disk.root / ram.models["other/thing:v2"].manifest_relpath).exists()
    assert _tree(ram.root) == ram_before


def test_a_model_that_would_cross_the_reserve_is_refused_then_written_when_there_is_room(
    cli, store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    disk_fs = tmpfs("8m", name="diskfs")
    disk = store_factory({"base:1": [text("base")]}, root=disk_fs / "models")
    ram = _ram_with(tmp_path / "ram", disk, {"big:1": [weights(3 * MIB, "big")]})
    before = _tree(disk.root)

    refused = cli("writeback", "--json", "--reserve", "6m", "--source", disk.root,
                  "--dest", ram.root)  # fmt: skip

    assert refused.code == 1
    assert "big:1 not written back" in refused.err
    assert "less than the reserve of 6.0 MiB" in refused.err
    assert _tree(disk.root) == before

    done = cli("writeback", "--json", "--reserve", "1m", "--source", disk.root, "--dest", ram.root)

    assert done.code == 0, done.err
    assert done.json["written"] == ["registry.ollama.ai/library/big:1"]


def test_a_disk_store_without_room_fails_loudly_and_keeps_the_ram_copy(
    cli, store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    disk_fs = tmpfs("2m", name="diskfs")
    disk = store_factory({"base:1": [text("base")]}, root=disk_fs / "models")
    ram = _ram_with(tmp_path / "ram", disk, {"big:1": [weights(3 * MIB, "big")]})
    ram_before = _tree(ram.root)

    run = cli("writeback", "--reserve", "0", "--source", disk.root, "--dest", ram.root)

    assert run.code == 1
    assert "big:1 not written back" in run.err
    assert not (disk.root / ram.models["big:1"].manifest_relpath).exists()
    assert _tree(ram.root) == ram_before


def test_links_planted_in_the_ram_disk_are_never_followed(cli, stores, tmp_path: Path) -> None:
    disk, ram = stores
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 5)
    # A blob of a RAM-only model replaced by a link to a file outside the stores.
    small = ram.models["other/thing:v2"].blobs[0]
    (ram.root / small.relpath).unlink()
    (ram.root / small.relpath).symlink_to(secret)
    # A manifest that is a link to a file outside (a listing skips it).
    manifest = ram.root / "manifests/registry.ollama.ai/library/linked/1"
    manifest.parent.mkdir(parents=True)
    manifest.symlink_to(ram.root / ram.models["mine:1"].manifest_relpath)

    run = cli("writeback", "--json", "--source", disk.root, "--dest", ram.root)

    assert run.code == 1
    assert "a symlink, never followed here" in run.err
    assert not (disk.root / small.relpath).exists()
    assert not (disk.root / "manifests/registry.ollama.ai/library/linked").exists()
    assert not (disk.root / ram.models["other/thing:v2"].manifest_relpath).exists()
    assert (disk.root / ram.models["mine:1"].manifest_relpath).exists()


def test_a_link_to_a_blob_the_disk_store_has_needs_no_copy(cli, stores) -> None:
    # As a cold model's blobs are: the link is not read, the disk store has it.
    disk, ram = stores
    ram.add("cp-of-llama:1", list(disk.models["llama3.2:3b"].blobs))
    for blob in disk.models["llama3.2:3b"].blobs:
        (ram.root / blob.relpath).unlink()
        (ram.root / blob.relpath).symlink_to(disk.root / blob.relpath)

    run = cli("writeback", "--json", "--source", disk.root, "--dest", ram.root)

    assert run.code == 0, run.err
    assert "registry.ollama.ai/library/cp-of-llama:1" in run.json["written"]


def test_a_writeback_killed_in_the_middle_of_a_blob_leaves_nothing_partial(
    store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path
) -> None:
    disk = store_factory({"base:1": [text("base")]}, root=tmpfs("600m", name="disk") / "models")
    big = text(os.urandom(MIB) * 256)
    ram = _ram_with(tmpfs("300m", name="ram") / "models", disk, {"big:70b": [big]})
    env = {**os.environ, "PYTHONPATH": str(CORE)}
    command = [*CLI, "writeback", "-q", "--verify", "--reserve", "0", "--source", disk.root,
               "--dest", ram.root]  # fmt: skip
    process = subprocess.Popen([str(part) for part in command], env=env)
    staging = disk.root / STAGING_NAME
    wait_for_a_growing_temp_file(disk.root, process, 8 * MIB)
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert not (disk.root / big.relpath).exists()
    assert not (disk.root / ram.models["big:70b"].manifest_relpath).exists()

    done = subprocess.run(
        [str(part) for part in command], env=env, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert "removed 1 temporary file(s) of an interrupted run" in done.stderr
    assert (disk.root / big.relpath).read_bytes() == (ram.root / big.relpath).read_bytes()
    assert not staging.exists() or not list(staging.iterdir())


def test_the_stores_must_exist_and_be_apart(cli, stores, tmp_path: Path) -> None:
    disk, ram = stores
    missing = cli("writeback", "--source", tmp_path / "nowhere", "--dest", ram.root)
    inside = cli("writeback", "--source", disk.root, "--dest", disk.root / "blobs")

    assert missing.code == 2
    assert "does not exist" in missing.err
    assert inside.code == 2
    assert "lies inside" in inside.err


def test_a_manifest_or_directory_that_is_a_link_is_refused_by_name(
    cli, stores, tmp_path: Path
) -> None:
    disk, ram = stores
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "latest").write_bytes(ram.models["mine:1"].manifest_bytes())
    library = ram.root / "manifests" / "registry.ollama.ai" / "library"
    (library / "planted").mkdir()
    (library / "planted" / "latest").symlink_to(outside / "latest")
    (library / "linkdir").symlink_to(outside)
    os.mkfifo(library / "mine" / "fifo")

    run = cli("writeback", "--json", "--source", disk.root, "--dest", ram.root)

    assert run.code == 1
    for relpath, kind in (
        ("manifests/registry.ollama.ai/library/planted/latest", "a symlink"),
        ("manifests/registry.ollama.ai/library/linkdir", "a symlink"),
        ("manifests/registry.ollama.ai/library/mine/fifo", "a FIFO"),
    ):
        assert f"{relpath} not written back: {ram.root / relpath} is {kind}" in run.err
    assert not (disk.root / "manifests/registry.ollama.ai/library/planted").exists()
    assert not (disk.root / "manifests/registry.ollama.ai/library/linkdir").exists()
    # The sound models are written back all the same.
    assert (disk.root / ram.models["mine:1"].manifest_relpath).is_file()
