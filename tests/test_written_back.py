"""Models written back stay visible: the record in the disk store, and populate keeping them cold.

A model made in RAM and written back is in no inventory. After the next boot
(an empty RAM disk, populate with the configured set only) it must still be
in the RAM disk, as a cold model: manifest copied, blobs linked to the disk
store. Nothing here ever deletes a model from the disk store.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from storegen import StoreFactory, SyntheticStore, make_store, text, weights

RECORD = "ollama-ramdisk-written-back.json"
MINE = "registry.ollama.ai/library/mine:1"


@pytest.fixture
def stores(store_factory: StoreFactory, tmp_path: Path) -> tuple[SyntheticStore, SyntheticStore]:
    disk = store_factory({"llama3.2:3b": [weights(200_000, "l"), text("license")]}, name="disk")
    ram = make_store(tmp_path / "ram", {"mine:1": [weights(300_000, "mine"), text("license")]})
    ram.add("llama3.2:3b", list(disk.models["llama3.2:3b"].blobs))
    return disk, ram


def _writeback(cli, disk: SyntheticStore, ram: SyntheticStore, *extra: str):
    run = cli("writeback", "--json", "--source", disk.root, "--dest", ram.root, *extra)
    assert run.code == 0, run.err
    return run


def _boot(cli, disk: SyntheticStore, ram_root: Path, *extra: str):
    """The RAM disk after a reboot: empty, then populate with the configured set only."""
    if ram_root.exists():
        shutil.rmtree(ram_root)
    return cli(
        "populate", "--json", "--source", disk.root, "--dest", ram_root, "llama3.2:3b", *extra
    )


def test_a_written_back_model_is_recorded_and_kept_cold_after_a_reboot(cli, stores) -> None:
    disk, ram = stores

    _writeback(cli, disk, ram)
    boot = _boot(cli, disk, ram.root)

    assert json.loads((disk.root / RECORD).read_text())["models"] == [MINE]
    assert boot.code == 0, boot.err
    assert boot.json["written_back"] == [MINE]
    assert boot.json["ram_only"] == []
    spec = ram.models["mine:1"]
    manifest = ram.root / spec.manifest_relpath
    assert manifest.read_bytes() == (disk.root / spec.manifest_relpath).read_bytes()
    for blob in spec.blobs:
        if blob.relpath in {b.relpath for b in disk.models["llama3.2:3b"].blobs}:
            continue  # shared with the hot model: a real file in RAM
        assert os.readlink(ram.root / blob.relpath) == str(disk.root / blob.relpath)


def test_a_refresh_with_prune_keeps_a_written_back_model(cli, stores) -> None:
    disk, ram = stores
    _writeback(cli, disk, ram)

    refresh = cli(
        "populate", "--json", "--prune", "--source", disk.root, "--dest", ram.root, "llama3.2:3b"
    )

    assert refresh.code == 0, refresh.err
    assert refresh.json["written_back"] == [MINE]
    assert not [path for path in refresh.json["pruned"] if path.startswith("manifests/")]
    assert (ram.root / ram.models["mine:1"].manifest_relpath).is_file()


def test_a_listed_model_is_not_reported_as_written_back(cli, stores) -> None:
    disk, ram = stores
    _writeback(cli, disk, ram)

    boot = _boot(cli, disk, ram.root, "mine:1")

    assert boot.code == 0, boot.err
    assert boot.json["written_back"] == []
    for blob in ram.models["mine:1"].blobs:
        assert not (ram.root / blob.relpath).is_symlink()  # hot: copied


def test_forget_removed_drops_the_record_entry_and_deletes_nothing(cli, stores) -> None:
    disk, ram = stores
    _writeback(cli, disk, ram)
    spec = ram.models["mine:1"]
    (ram.root / spec.manifest_relpath).unlink()  # ollama rm in RAM

    kept = _writeback(cli, disk, ram)  # at ollama.service's stop: forgets nothing
    forgot = _writeback(cli, disk, ram, "--forget-removed")
    boot = _boot(cli, disk, ram.root)

    assert kept.json["forgotten"] == []
    assert forgot.json["forgotten"] == [MINE]
    assert forgot.json["changed"] is True
    assert json.loads((disk.root / RECORD).read_text())["models"] == []
    assert (disk.root / spec.manifest_relpath).is_file()
    for blob in spec.blobs:
        assert (disk.root / blob.relpath).is_file()
    assert boot.json["written_back"] == []
    assert not (ram.root / spec.manifest_relpath).exists()


def test_a_recorded_model_pulled_again_in_ram_is_written_back_again(cli, stores) -> None:
    disk, ram = stores
    _writeback(cli, disk, ram)
    old_blob = ram.models["mine:1"].blobs[0]
    ram.add("mine:1", [weights(310_000, "mine v2"), text("license")])

    again = _writeback(cli, disk, ram)

    assert again.json["written"] == [MINE]
    spec = ram.models["mine:1"]
    assert (disk.root / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()
    assert (disk.root / spec.blobs[0].relpath).is_file()
    assert (disk.root / old_blob.relpath).is_file()  # never deleted


def test_a_model_of_the_inventory_changed_in_ram_is_not_written_back(cli, stores) -> None:
    disk, ram = stores
    disk_manifest = (disk.root / disk.models["llama3.2:3b"].manifest_relpath).read_bytes()
    ram.add("llama3.2:3b", [weights(123_000, "changed in ram")])

    run = _writeback(cli, disk, ram)

    assert run.json["written"] == [MINE]  # the inventory's model is the disk store's
    assert (disk.root / disk.models["llama3.2:3b"].manifest_relpath).read_bytes() == disk_manifest


@pytest.mark.parametrize(
    "plant",
    ["not json", "a list", "a symlink", "a fifo", "a bad name", "a missing model", "a broken blob"],
)
def test_a_bad_record_never_stops_a_boot(cli, stores, tmp_path: Path, plant: str) -> None:
    disk, ram = stores
    _writeback(cli, disk, ram)
    record = disk.root / RECORD
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"models": ["secret:model"]}))
    if plant == "not json":
        record.write_text("{")
    elif plant == "a list":
        record.write_text('["mine:1"]')
    elif plant == "a symlink":
        record.unlink()
        record.symlink_to(secret)
    elif plant == "a fifo":
        record.unlink()
        os.mkfifo(record)
    elif plant == "a bad name":
        record.write_text(json.dumps({"models": ["../../etc", MINE]}))
    elif plant == "a missing model":
        record.write_text(json.dumps({"models": ["gone:1", MINE]}))
    elif plant == "a broken blob":
        (disk.root / ram.models["mine:1"].blobs[0].relpath).unlink()

    boot = _boot(cli, disk, ram.root)

    assert boot.code == 0, boot.err
    if plant in ("a bad name", "a missing model"):
        assert boot.json["written_back"] == [MINE]
    else:
        assert boot.json["written_back"] == []
    assert "secret" not in boot.out + boot.err
    assert "ignored" in boot.err or "not kept" in boot.err
    assert (ram.root / disk.models["llama3.2:3b"].manifest_relpath).is_file()
