"""After a reboot the models made in RAM are listed, answer, and are kept as cold; preload ran."""

from __future__ import annotations

from typing import Any

from conftest import (
    DISK_STORE,
    Name,
    Store,
    assert_preloaded_since,
    generate,
    journal,
    listed_models,
    state_time,
)

MADE = [Name.parse("wbchat:one"), Name.parse("mine/copied:v1")]


def test_the_models_made_in_ram_are_listed_and_answer(host: Any) -> None:
    listed = listed_models(host)
    for name in MADE:
        assert name.display in listed
        assert generate(host, name.display)["done"]


def test_they_are_cold_blobs_linked_to_the_disk_store(
    ram: Store, disk: Store, hot: list[Name]
) -> None:
    hot_blobs = {blob for name in hot for blob in disk.blob_names(name)}
    for name in MADE:
        assert ram.manifests[name.manifest]["sha256"] == disk.manifests[name.manifest]["sha256"]
        for blob in ram.blob_names(name):
            if blob not in hot_blobs:
                assert ram.blobs[blob]["link"] == f"{DISK_STORE}/blobs/{blob}", blob


def test_the_refill_names_them(host: Any) -> None:
    log = journal(host)
    for name in MADE:
        assert f"kept {name.qualified} as cold" in log, log


def test_the_preload_models_are_loaded_after_the_boot(host: Any, hostvars: dict[str, Any]) -> None:
    assert_preloaded_since(host, hostvars, state_time(host, "reboot.at"), 180)
