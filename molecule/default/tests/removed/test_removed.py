"""After playbooks/remove.yml Ollama serves from its disk store and nothing is lost."""

from __future__ import annotations

from typing import Any

from conftest import (
    CLI,
    CONFIG,
    DISK_STORE,
    DROPIN_DIR,
    Name,
    Store,
    assert_no_stray_blobs,
    fstab_entries,
    generate,
    listed_models,
    live_mount,
    service_env,
)

# Made in RAM by a user with `ollama create` just before the removal: its blobs
# exist only there, unless the write-back timer ran since. (tinyllama:latest,
# made with `ollama cp` before the refresh, was written back before the reboot
# after it and kept since.)
CREATED = Name.parse("tinyllama:chat")


def test_ram_disk_is_gone(host: Any, ram_path: str) -> None:
    assert fstab_entries(host, ram_path) == []
    assert live_mount(host, ram_path) is None


def test_dropins_and_the_command_are_gone(host: Any) -> None:
    leftovers = host.run("ls -A %s", DROPIN_DIR).stdout.split()
    assert [f for f in leftovers if f.startswith("ollama-ramdisk")] == []
    assert not host.file(CLI).exists
    assert not host.file(CONFIG).exists


def test_ollama_runs_on_the_disk_store(host: Any) -> None:
    assert host.service("ollama.service").is_running
    assert service_env(host)["OLLAMA_MODELS"] == DISK_STORE


def test_every_model_is_intact_on_disk(
    host: Any, disk: Store, fixture_record: dict[str, Any]
) -> None:
    ollama = host.user("ollama")
    for model, record in fixture_record.items():
        manifest = disk.manifests.get(record["manifest"])
        assert manifest is not None, f"{model}: manifest lost"
        assert manifest["sha256"] == record["manifest_sha256"], f"{model}: manifest changed"
    for blob, entry in disk.blobs.items():
        assert entry["regular"], f"{blob} in the disk store is not a regular file"
        assert entry["sha256"] == blob.split("-", 1)[1], f"{blob} in the disk store is damaged"
        assert (entry["uid"], entry["gid"]) == (ollama.uid, ollama.gid), (
            f"{blob} is not owned by ollama"
        )
    assert_no_stray_blobs(disk)


def test_a_model_made_in_ram_was_written_back(host: Any, disk: Store) -> None:
    assert CREATED.manifest in disk.manifests
    for blob in disk.blob_names(CREATED):
        assert blob in disk.blobs, f"{blob} of {CREATED.display} was not written back"
    assert CREATED.display in listed_models(host)


def test_a_model_made_in_ram_answers_from_the_disk_store(host: Any) -> None:
    assert generate(host, CREATED.display)["done"]


def test_the_model_copied_in_ram_before_the_refresh_is_kept(host: Any, disk: Store) -> None:
    copied = Name.parse("tinyllama:latest")
    assert copied.manifest in disk.manifests
    assert copied.display in listed_models(host)


def test_the_write_back_units_are_gone(host: Any) -> None:
    for kind in ("service", "path", "timer"):
        assert not host.file(f"/etc/systemd/system/ollama-ramdisk-writeback.{kind}").exists
    assert not host.file("/etc/systemd/system/ollama-ramdisk-preload.service").exists


def test_api_lists_every_model_of_the_disk_store(host: Any, disk: Store) -> None:
    on_disk = {Name(*path.split("/")[1:]).display for path in disk.manifests}
    assert listed_models(host) == on_disk
