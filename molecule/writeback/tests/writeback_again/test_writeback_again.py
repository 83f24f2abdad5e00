"""After the killed run, the next write-back completes the 3 GiB model and cleans up."""

from __future__ import annotations

from typing import Any

from conftest import DISK_STORE, Name, Store, written_back

BIG = Name.parse("big:latest")
SIZE = 3 << 30


def test_the_model_is_complete_and_byte_identical(ram: Store, disk: Store) -> None:
    assert disk.manifests[BIG.manifest]["sha256"] == ram.manifests[BIG.manifest]["sha256"]
    for blob in ram.blob_names(BIG):
        assert disk.blobs[blob]["regular"]
        assert disk.blobs[blob]["sha256"] == blob.split("-", 1)[1]
    assert SIZE in {disk.blobs[blob]["size"] for blob in ram.blob_names(BIG)}


def test_the_temporary_files_are_gone(host: Any) -> None:
    assert not host.file(f"{DISK_STORE}/.ollama-ramdisk-tmp").exists


def test_it_is_recorded(host: Any) -> None:
    assert BIG in written_back(host)
