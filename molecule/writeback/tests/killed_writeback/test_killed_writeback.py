"""A write-back killed in the middle of a 3 GiB blob leaves nothing partial under a final name."""

from __future__ import annotations

import json
from typing import Any

from conftest import DISK_STORE, FIXTURE_STATE, Name, Store

BIG = Name.parse("big:latest")
SIZE = 3 << 30


def test_the_run_was_killed_in_the_middle_of_the_blob(host: Any) -> None:
    killed = json.loads(host.file(f"{FIXTURE_STATE}/killed.json").content_string)
    assert killed["temp"], "the write-back never wrote the blob's temporary file"
    assert 256 << 20 <= killed["bytes_at_kill"] < SIZE
    assert killed["state"] in ("inactive", "failed")
    result = host.run("systemctl show --property=Result --value ollama-ramdisk-writeback.service")
    assert result.stdout.strip() == "signal"


def test_nothing_partial_stands_under_a_final_name(host: Any, ram: Store, disk: Store) -> None:
    assert BIG.manifest not in disk.manifests
    big_blob = next(b for b in ram.blob_names(BIG) if ram.blobs[b]["size"] == SIZE)
    assert big_blob not in disk.blobs
    for blob, entry in disk.blobs.items():
        assert entry["regular"], blob
        assert entry["sha256"] == blob.split("-", 1)[1], blob
    # What the kill left is a temporary file in the staging directory, no more.
    leftovers = {path for path in disk.other if not path.startswith(".ollama-ramdisk-tmp/")}
    assert leftovers <= {"ollama-ramdisk-written-back.json", ".ollama-ramdisk.lock"}
    assert host.file(f"{DISK_STORE}/.ollama-ramdisk-tmp").is_directory
