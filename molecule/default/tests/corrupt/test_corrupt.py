"""A corrupted blob found by playbooks/verify.yml is repaired from the disk store."""

from __future__ import annotations

from typing import Any

from conftest import (
    FIXTURE_STATE,
    Store,
    assert_no_stray_blobs,
    assert_ram_disk_serves,
    listed_models,
    names,
    snapshot,
)


def test_corrupted_blob_is_restored(host: Any, ram_path: str, disk: Store) -> None:
    blob = host.file(f"{FIXTURE_STATE}/corrupted").content_string.strip()
    ram = snapshot(host, f"{ram_path}/models")
    entry = ram.blobs[blob]
    assert entry["regular"], f"{blob} was replaced by a link, not repaired"
    assert entry["sha256"] == blob.split("-", 1)[1] == disk.blobs[blob]["sha256"]


def test_ram_disk_serves_every_model_again(
    host: Any, hostvars: dict[str, Any], ram_path: str, disk: Store
) -> None:
    hot = names(hostvars.get("ollama_ramdisk_models", []))
    cold = names(hostvars.get("ollama_ramdisk_cold_models", []))
    ram = snapshot(host, f"{ram_path}/models")
    assert_ram_disk_serves(host, ram, disk, hot, cold)
    assert_no_stray_blobs(ram)
    assert listed_models(host) == {name.display for name in hot + cold}
