"""Models made in RAM with `ollama create` and `ollama cp` reach the disk store within 60 s."""

from __future__ import annotations

from typing import Any

from conftest import (
    DISK_STORE,
    Name,
    Store,
    instance_time,
    state_time,
    unit_journal,
    unit_property,
    wait_for,
    written_back,
)

MADE = [Name.parse("wbchat:one"), Name.parse("mine/copied:v1")]
UNIT = "ollama-ramdisk-writeback"


def test_the_write_back_triggers_run_with_ollama(host: Any) -> None:
    for kind in ("path", "timer"):
        assert unit_property(host, f"{UNIT}.{kind}", "ActiveState") == "active", kind
        assert unit_property(host, f"{UNIT}.{kind}", "UnitFileState") == "enabled", kind


def test_both_models_are_in_the_disk_store_within_60_s(host: Any) -> None:
    made_at = state_time(host, "made-in-ram.at")

    def on_disk() -> bool:
        return all(host.file(f"{DISK_STORE}/{name.manifest}").exists for name in MADE)

    wait_for(
        "the models made in RAM in the disk store", on_disk, made_at + 60 - instance_time(host)
    )


def test_they_are_byte_identical_to_the_ram_copies(ram: Store, disk: Store) -> None:
    for name in MADE:
        assert disk.manifests[name.manifest]["sha256"] == ram.manifests[name.manifest]["sha256"]
        for blob in ram.blob_names(name):
            assert disk.blobs[blob]["regular"], blob
            assert disk.blobs[blob]["sha256"] == blob.split("-", 1)[1], blob
            assert disk.blobs[blob]["sha256"] == ram.blobs[blob]["sha256"], blob


def test_they_belong_to_the_stores_owner(host: Any, ram: Store, disk: Store) -> None:
    ollama = host.user("ollama")
    for name in MADE:
        entries = [disk.manifests[name.manifest]] + [disk.blobs[b] for b in ram.blob_names(name)]
        assert all((e["uid"], e["gid"]) == (ollama.uid, ollama.gid) for e in entries), name


def test_they_are_recorded_and_logged(host: Any) -> None:
    assert set(MADE) <= set(written_back(host))
    log = unit_journal(host, f"{UNIT}.service")
    for name in MADE:
        assert f"wrote back {name.qualified}" in log, log
