"""ollama_ramdisk_writeback: models made in RAM reach the disk store, run as Ansible runs it."""

from __future__ import annotations

import json
from pathlib import Path

from module_harness import run_module
from storegen import StoreFactory, make_store, text, weights

MINE = "registry.ollama.ai/library/mine:1"


def _stores(store_factory: StoreFactory, tmp_path: Path):
    disk = store_factory({"llama3.2:3b": [weights(100_000, "l"), text("license")]}, name="disk")
    ram = make_store(tmp_path / "ram", {"mine:1": [weights(150_000, "mine"), text("license")]})
    return disk, ram


def test_writes_back_once_and_records_the_model(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    disk, ram = _stores(store_factory, tmp_path)
    args = {"source": disk.root, "dest": ram.root}

    first = run_module("ollama_ramdisk_writeback", args)
    second = run_module("ollama_ramdisk_writeback", args)

    assert first.status == 0, first.msg
    assert first.changed is True
    assert first.result["written"] == [MINE]
    spec = ram.models["mine:1"]
    assert (disk.root / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()
    record = json.loads((disk.root / "ollama-ramdisk-written-back.json").read_text())
    assert record["models"] == [MINE]
    assert second.status == 0
    assert second.changed is False


def test_check_mode_lists_the_models_and_writes_nothing(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    disk, ram = _stores(store_factory, tmp_path)
    before = sorted(str(path) for path in disk.root.rglob("*"))

    run = run_module(
        "ollama_ramdisk_writeback", {"source": disk.root, "dest": ram.root}, check_mode=True
    )

    assert run.status == 0, run.msg
    assert run.changed is True
    assert run.result["dry_run"] is True
    assert run.result["written"] == [MINE]
    assert sorted(str(path) for path in disk.root.rglob("*")) == before


def test_a_model_over_the_reserve_fails_naming_it(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    disk, ram = _stores(store_factory, tmp_path)

    run = run_module(
        "ollama_ramdisk_writeback", {"source": disk.root, "dest": ram.root, "reserve": "1000000t"}
    )

    assert run.status == 1
    assert MINE in run.msg
    assert "reserve" in run.msg
    assert not (disk.root / ram.models["mine:1"].manifest_relpath).exists()
