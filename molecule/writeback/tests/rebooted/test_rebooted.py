"""After a reboot the models made in RAM are listed, answer, and are kept as cold; preload ran."""

from __future__ import annotations

from typing import Any

from conftest import (
    DISK_STORE,
    Name,
    Store,
    generate,
    instance_time,
    journal,
    listed_models,
    loaded_models,
    state_time,
    wait_for,
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
    wanted = {Name.parse(model).display for model in hostvars["ollama_service_preload"]}
    rebooted_at = state_time(host, "reboot.at")

    def loaded() -> dict[str, Any] | None:
        models = loaded_models(host)
        return models if wanted <= set(models) else None

    models = wait_for(
        "the preload models in /api/ps", loaded, rebooted_at + 180 - instance_time(host)
    )
    # keep_alive -1: loaded until evicted, which Ollama shows as an expiry centuries ahead.
    assert all(int(models[name]["expires_at"][:4]) > 2100 for name in wanted)
