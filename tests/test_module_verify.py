"""ollama_ramdisk_verify: integrity check and repair, run as Ansible runs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from module_harness import run_module
from storegen import SyntheticStore

QWEN = "qwen2.5-coder:7b"
SMALL = "llama3.2:1b"


@pytest.fixture
def ram(tmp_path: Path, fleet: SyntheticStore) -> Path:
    """A copy of the disk store, as the RAM disk holds it."""
    return Path(shutil.copytree(fleet.root, tmp_path / "ram"))


def _corrupt(path: Path) -> bytes:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    return bytes(content)


def test_sound_store_is_ok_and_unchanged(ram: Path, fleet: SyntheticStore) -> None:
    run = run_module("ollama_ramdisk_verify", {"store": ram})

    assert run.status == 0, run.msg
    assert run.result["ok"] is True
    assert run.changed is False
    assert run.result["checked"] == len(fleet.distinct_blobs())
    assert run.result["corrupt"] == []
    assert run.result["missing"] == []


def test_corrupt_blob_fails_naming_it(ram: Path, fleet: SyntheticStore) -> None:
    weights = fleet.models[QWEN].layers[0]
    _corrupt(ram / weights.relpath)

    run = run_module("ollama_ramdisk_verify", {"store": ram})

    assert run.status == 1
    assert run.result["ok"] is False
    assert run.result["corrupt"] == [weights.relpath]
    assert f"corrupt: {weights.relpath}" in run.msg
    assert str(ram) in run.msg


def test_missing_blob_fails_naming_it(ram: Path, fleet: SyntheticStore) -> None:
    weights = fleet.models[SMALL].layers[0]
    (ram / weights.relpath).unlink()

    run = run_module("ollama_ramdisk_verify", {"store": ram, "models": [SMALL]})

    assert run.failed
    assert run.result["missing"] == [weights.relpath]
    assert f"missing: {weights.relpath}" in run.msg


def test_only_the_named_models_are_checked(ram: Path, fleet: SyntheticStore) -> None:
    _corrupt(ram / fleet.models[QWEN].layers[0].relpath)

    run = run_module("ollama_ramdisk_verify", {"store": ram, "models": [SMALL]})

    assert run.status == 0, run.msg
    assert run.result["checked"] == len(fleet.models[SMALL].blobs)


def test_repair_restores_the_blob_from_the_source(ram: Path, fleet: SyntheticStore) -> None:
    weights = fleet.models[QWEN].layers[0]
    _corrupt(ram / weights.relpath)

    run = run_module("ollama_ramdisk_verify", {"store": ram, "repair": True, "source": fleet.root})

    assert run.status == 0, run.msg
    assert run.changed
    assert run.result["repaired"] == [weights.relpath]
    assert (ram / weights.relpath).read_bytes() == weights.content
    assert run_module("ollama_ramdisk_verify", {"store": ram}).result["ok"] is True


def test_check_mode_reports_what_would_be_repaired_and_repairs_nothing(
    ram: Path, fleet: SyntheticStore
) -> None:
    weights = fleet.models[QWEN].layers[0]
    corrupted = _corrupt(ram / weights.relpath)

    run = run_module(
        "ollama_ramdisk_verify",
        {"store": ram, "repair": True, "source": fleet.root},
        check_mode=True,
    )

    assert run.status == 0, run.msg
    assert run.changed
    assert run.result["would_repair"] == [weights.relpath]
    assert run.result["repaired"] == []
    assert (ram / weights.relpath).read_bytes() == corrupted


def test_repair_without_a_source_is_refused(ram: Path) -> None:
    run = run_module("ollama_ramdisk_verify", {"store": ram, "repair": True})

    assert run.failed
    assert run.msg == "repair is True but all of the following are missing: source"


def test_store_that_is_not_a_directory_is_named(tmp_path: Path) -> None:
    run = run_module("ollama_ramdisk_verify", {"store": tmp_path / "gone"})

    assert run.failed
    assert run.msg == f"store: {tmp_path / 'gone'} is not a directory"
