"""A changed model set is applied in place by playbooks/refresh-models.yml, with no restart."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import (
    CONFIG,
    FIXTURE_STATE,
    Name,
    Store,
    assert_no_stray_blobs,
    assert_ram_disk_serves,
    fstab_entries,
    fstab_size,
    listed_models,
    live_mount,
    names,
    plan_size,
)

PULLED = Name.parse("tinyllama:latest")


@pytest.fixture(scope="module")
def before(host: Any) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(
        host.file(f"{FIXTURE_STATE}/before-refresh.json").content_string
    )
    return state


def test_ollama_was_not_restarted(host: Any, before: dict[str, Any]) -> None:
    pid = host.run("systemctl show --property=MainPID --value ollama.service").stdout.strip()
    assert int(pid) == before["mainpid"]


def test_ram_disk_is_resized_in_place_to_the_new_plan(
    host: Any, hostvars: dict[str, Any], ram_path: str, disk: Store, hot: list[Name]
) -> None:
    size = plan_size(disk, hot, float(hostvars.get("ollama_ramdisk_headroom", 1.2)))
    mount = live_mount(host, ram_path)
    assert mount is not None
    assert int(mount["size"]) == size
    options = dict(
        o.split("=", 1) for o in fstab_entries(host, ram_path)[0][3].split(",") if "=" in o
    )
    assert fstab_size(options["size"]) == size


def test_blobs_kept_in_the_set_were_neither_copied_again_nor_remounted(
    ram: Store, before: dict[str, Any]
) -> None:
    kept = set(ram.blobs) & set(before["inodes"])
    assert kept, "no blob of the old set is left: nothing to compare"
    moved = sorted(blob for blob in kept if ram.blobs[blob]["ino"] != before["inodes"][blob])
    assert not moved, f"these blobs were rewritten: {moved}"


def test_new_models_are_copied_and_cold_ones_linked(
    host: Any, ram: Store, disk: Store, hot: list[Name], cold: list[Name]
) -> None:
    assert_ram_disk_serves(host, ram, disk, hot, cold)


def test_removed_models_are_pruned_and_the_pulled_one_kept(
    ram: Store, hot: list[Name], cold: list[Name]
) -> None:
    assert set(ram.manifests) == {name.manifest for name in [*hot, *cold, PULLED]}
    assert_no_stray_blobs(ram)
    for blob in ram.blob_names(PULLED):
        assert ram.blobs[blob]["regular"], f"{blob} of the model pulled into RAM is gone"


def test_config_for_the_next_boot_holds_the_new_set(
    host: Any, hot: list[Name], cold: list[Name]
) -> None:
    config = json.loads(host.file(CONFIG).content_string)
    assert names(config["models"]) == hot
    assert names(config.get("cold", [])) == cold


def test_api_lists_the_new_set_and_the_pulled_model(
    host: Any, hot: list[Name], cold: list[Name]
) -> None:
    assert listed_models(host) == {name.display for name in [*hot, *cold, PULLED]}


def test_a_hot_model_removed_in_ram_with_ollama_rm_is_back(
    host: Any, hostvars: dict[str, Any], ram: Store, disk: Store
) -> None:
    removed = Name.parse(hostvars["fixture_removed_in_ram"])
    assert removed.manifest in ram.manifests
    for blob in disk.blob_names(removed):
        assert ram.blobs[blob]["sha256"] == blob.split("-", 1)[1], f"{blob} is not back"
    assert removed.display in listed_models(host)
