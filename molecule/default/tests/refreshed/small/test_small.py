"""A RAM disk too small for its set still lets Ollama start with every model after a reboot."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import (
    Name,
    Store,
    assert_no_stray_blobs,
    fstab_size,
    generate,
    journal,
    listed_models,
    live_mount,
    written_back,
)


@pytest.fixture(scope="module")
def from_disk(ram: Store, disk: Store, hot: list[Name]) -> list[Name]:
    """Hot models with at least one blob linked to the disk store."""
    return [name for name in hot if any(ram.blobs[b]["link"] for b in disk.blob_names(name))]


def test_ram_disk_has_the_forced_size(host: Any, hostvars: dict[str, Any], ram_path: str) -> None:
    mount = live_mount(host, ram_path)
    assert mount is not None
    assert int(mount["size"]) == fstab_size(hostvars["fixture_small_size"])


def test_service_starts_and_lists_every_model(host: Any, hot: list[Name], cold: list[Name]) -> None:
    # tinyllama:latest, made in RAM with `ollama cp` before the refresh, was written
    # back and is kept after the reboot (the write-back's record).
    kept = written_back(host)
    assert Name.parse("tinyllama:latest") in kept
    assert host.service("ollama.service").is_running
    assert listed_models(host) == {name.display for name in hot + cold + kept}


def test_models_served_through_fallback_links_answer(host: Any, from_disk: list[Name]) -> None:
    for name in from_disk:
        assert generate(host, name.display)["done"]


def test_blobs_that_did_not_fit_are_served_from_disk(
    ram: Store, disk: Store, hot: list[Name], from_disk: list[Name]
) -> None:
    assert from_disk, "the whole set fit: the forced size is not too small"
    for name in hot:
        for blob in disk.blob_names(name):
            entry = ram.blobs[blob]
            assert entry["sha256"] == blob.split("-", 1)[1], f"{blob} of {name.display} is damaged"
            if entry["link"]:
                assert entry["link"] == f"{disk.root}/blobs/{blob}"
    assert_no_stray_blobs(ram)


def test_journal_names_the_models_served_from_disk(host: Any, from_disk: list[Name]) -> None:
    log = journal(host)
    unnamed = [name.display for name in from_disk if not any(s in log for s in name.spellings())]
    assert not unnamed, f"ExecStartPre's journal does not name {unnamed}:\n{log}"
