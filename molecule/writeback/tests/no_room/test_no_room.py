"""No room under the reserve: the write-back fails loudly, naming the model; RAM stays as it was."""

from __future__ import annotations

from typing import Any

from conftest import DISK_STORE, Name, Store, listed_models, unit_journal, unit_property, wait_for

NOROOM = Name.parse("noroom:one")
UNIT = "ollama-ramdisk-writeback.service"


def test_the_write_back_fails_naming_the_model_and_the_reserve(host: Any) -> None:
    line = f"{NOROOM.qualified} not written back"
    log = wait_for(
        "the refusal in the journal", lambda: line in (j := unit_journal(host, UNIT)) and j, 90
    )
    refusal = next(text for text in log.splitlines() if line in text)
    assert "reserve of" in refusal, refusal
    assert unit_property(host, UNIT, "Result") == "exit-code"
    assert unit_property(host, UNIT, "ExecMainStatus") == "1"


def test_the_disk_store_did_not_get_it(host: Any) -> None:
    assert not host.file(f"{DISK_STORE}/{NOROOM.manifest}").exists


def test_the_ram_copy_is_untouched_and_served(ram: Store) -> None:
    entry = ram.manifests[NOROOM.manifest]
    assert entry["regular"]
    for blob in ram.blob_names(NOROOM):
        assert ram.blobs[blob]["sha256"] == blob.split("-", 1)[1]


def test_ollama_still_lists_it(host: Any) -> None:
    assert NOROOM.display in listed_models(host)
