"""verify: every blob hashed against its name; --repair copies bad ones again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ollama_ramdisk.desttree import STAGING_NAME
from storegen import MountTmpfs, StoreFactory, SyntheticStore, make_store, text, weights

HF = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
HOT = ["llama3.2:3b", "llama3.2:1b", HF]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root")


@pytest.fixture
def ram(cli, fleet: SyntheticStore, tmpfs: MountTmpfs) -> Path:
    """A RAM disk holding HOT, owned by a service user as the role leaves it."""
    dest = tmpfs("8m") / "models"
    run = cli(
        "populate", "-q", "--source", fleet.root, "--dest", dest, "--owner", "4242:4343", *HOT
    )
    assert run.code == 0, run.err
    return dest


def test_a_whole_store_verifies_clean(cli, fleet: SyntheticStore, ram: Path) -> None:
    run = cli("verify", "-q", "--json", "--store", ram, "--jobs", 2)

    distinct = fleet.distinct_blobs(*HOT)
    assert run.code == 0, run.err
    assert run.json["ok"] is True
    assert run.json["checked"] == len(distinct)
    assert run.json["bytes"] == sum(layer.size for layer in distinct.values())
    assert sorted(run.json["models"]) == sorted(fleet.models[name].qualified for name in HOT)
    assert run.json["corrupt"] == run.json["missing"] == run.json["repaired"] == []


def test_only_the_named_models_are_hashed(cli, fleet: SyntheticStore, ram: Path) -> None:
    make_store(ram).corrupt(fleet.models["llama3.2:3b"].layers[0])

    run = cli("verify", "-q", "--json", "--store", ram, "llama3.2:1b")

    assert run.code == 0
    assert run.json["checked"] == len(fleet.models["llama3.2:1b"].blobs)


def test_corrupt_and_missing_blobs_are_named_and_repaired_from_the_source(
    cli, fleet: SyntheticStore, ram: Path
) -> None:
    corrupt = fleet.models["llama3.2:3b"].layers[0]
    missing = fleet.models[HF].layers[0]
    make_store(ram).corrupt(corrupt)
    (ram / missing.relpath).unlink()

    found = cli("verify", "--json", "--store", ram)
    repaired = cli("verify", "-q", "--json", "--store", ram, "--repair", "--source", fleet.root)
    clean = cli("verify", "-q", "--json", "--store", ram)

    assert found.code == 1
    assert found.json["corrupt"] == [corrupt.relpath]
    assert found.json["missing"] == [missing.relpath]
    assert corrupt.relpath in found.err
    assert missing.relpath in found.err
    assert repaired.code == 0, repaired.err
    assert sorted(repaired.json["repaired"]) == sorted([corrupt.relpath, missing.relpath])
    for layer in (corrupt, missing):
        copy = ram / layer.relpath
        assert copy.read_bytes() == fleet.blob_path(layer).read_bytes()
        # Repaired files belong to the store's owner, as the populated ones do.
        assert (copy.stat().st_uid, copy.stat().st_gid) == (4242, 4343)
        assert copy.stat().st_mode & 0o7777 == 0o644
    assert clean.code == 0
    assert not (ram / STAGING_NAME).exists() or not any((ram / STAGING_NAME).iterdir())


def test_a_repair_from_a_corrupt_source_fails_and_installs_nothing_bad(
    cli, fleet: SyntheticStore, ram: Path
) -> None:
    layer = fleet.models["llama3.2:1b"].layers[0]
    make_store(ram).corrupt(layer)
    fleet.corrupt(layer)
    bad_in_ram = (ram / layer.relpath).read_bytes()

    run = cli("verify", "-q", "--json", "--store", ram, "--repair", "--source", fleet.root)

    assert run.code == 1
    assert run.json["ok"] is False
    assert run.json["corrupt"] == [layer.relpath]
    assert run.json["repaired"] == []
    assert (ram / layer.relpath).read_bytes() == bad_in_ram


def test_a_model_without_its_manifest_is_reported(cli, fleet: SyntheticStore, ram: Path) -> None:
    run = cli("verify", "-q", "--json", "--store", ram, "acme/embedder:v1")

    assert run.code == 1
    assert run.json["ok"] is False
    assert fleet.models["acme/embedder:v1"].manifest_relpath in run.json["missing"]


def test_linked_blobs_are_checked_through_their_link(
    cli, fleet: SyntheticStore, tmpfs: MountTmpfs
) -> None:
    dest = tmpfs("8m") / "models"
    assert cli("populate", "-q", "--source", fleet.root, "--dest", dest, "--cold", HF).code == 0
    fleet.corrupt(fleet.models[HF].layers[0])

    run = cli("verify", "-q", "--json", "--store", dest)

    assert run.code == 1
    assert run.json["corrupt"] == [fleet.models[HF].layers[0].relpath]


def test_a_repair_on_a_ram_disk_too_full_for_a_second_copy_replaces_the_bad_one(
    cli, store_factory: StoreFactory, tmpfs: MountTmpfs
) -> None:
    built = store_factory({"big:1": [weights(700 * 1024, "big")]})
    dest = tmpfs("1m") / "models"
    assert cli("populate", "-q", "--source", built.root, "--dest", dest, "big:1").code == 0
    layer = built.models["big:1"].layers[0]
    make_store(dest).corrupt(layer)

    run = cli("verify", "-q", "--json", "--store", dest, "--repair", "--source", built.root)

    assert run.code == 0, run.err
    assert run.json["repaired"] == [layer.relpath]
    assert not (dest / layer.relpath).is_symlink()
    assert (dest / layer.relpath).read_bytes() == layer.content


def test_a_repair_replaces_a_planted_link_and_never_writes_through_it(
    cli, fleet: SyntheticStore, ram: Path, tmp_path: Path
) -> None:
    layer = fleet.models["llama3.2:1b"].layers[0]
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * layer.size)  # the right size: only the hash tells
    (ram / layer.relpath).unlink()
    (ram / layer.relpath).symlink_to(victim)

    found = cli("verify", "-q", "--json", "--store", ram, "llama3.2:1b")
    repaired = cli("verify", "-q", "--json", "--store", ram, "--repair", "--source", fleet.root)

    assert found.code == 1
    assert found.json["corrupt"] == [layer.relpath]
    assert repaired.code == 0, repaired.err
    assert repaired.json["repaired"] == [layer.relpath]
    assert victim.read_bytes() == b"x" * layer.size
    assert (ram / layer.relpath).read_bytes() == fleet.blob_path(layer).read_bytes()


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_an_empty_blob_linked_to_something_not_a_file_is_corrupt_and_never_hangs(
    cli, store_factory: StoreFactory, tmpfs: MountTmpfs, tmp_path: Path, target: str
) -> None:
    # An empty blob has the size /dev/zero and a FIFO report: only its type gives it away.
    empty = text(b"")
    built = store_factory({"m:1": [weights(1000, "m"), empty]})
    dest = tmpfs("8m") / "models"
    assert cli("populate", "-q", "--source", built.root, "--dest", dest, "m:1").code == 0
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        target = str(tmp_path / "fifo")
    (dest / empty.relpath).unlink()
    (dest / empty.relpath).symlink_to(target)

    run = cli("verify", "-q", "--json", "--store", dest)

    assert run.code == 1
    assert run.json["corrupt"] == [empty.relpath]
    assert "not a regular file" in run.err
