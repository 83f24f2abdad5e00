"""ollama_ramdisk_populate: fill a store from another, run as Ansible runs it."""

from __future__ import annotations

import json
import pwd
from pathlib import Path

from conftest import MountTmpfs
from module_harness import run_module
from storegen import (
    LICENSE_LLAMA,
    TEMPLATE_CHAT,
    SyntheticStore,
    make_store,
    qualified,
    weights,
)

HF_MODEL = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
MIB = 1024 * 1024


def _holds_copy(dest: Path, store: SyntheticStore, name: str) -> bool:
    """The model's manifest and blobs are regular files, byte-identical to the source's."""
    spec = store.models[name]
    if (dest / spec.manifest_relpath).read_bytes() != spec.manifest_bytes():
        return False
    for layer in spec.blobs:
        path = dest / layer.relpath
        if path.is_symlink() or path.read_bytes() != layer.content:
            return False
    return True


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if not path.is_dir())


def test_hot_models_are_copied_byte_identical_and_cold_blobs_linked(
    fleet: SyntheticStore, tmp_path: Path
) -> None:
    dest = tmp_path / "ram"

    run = run_module(
        "ollama_ramdisk_populate",
        {
            "source": fleet.root,
            "dest": dest,
            "models": ["llama3.2:3b", "llama3.2:latest"],
            "cold_models": [HF_MODEL],
        },
    )

    assert run.status == 0, run.msg
    assert run.changed
    assert _holds_copy(dest, fleet, "llama3.2:3b")
    assert _holds_copy(dest, fleet, "llama3.2:latest")
    hf_weights = fleet.models[HF_MODEL].layers[0]
    link = dest / hf_weights.relpath
    assert link.is_symlink()
    assert link.resolve() == fleet.blob_path(hf_weights).resolve()
    # The two tags share every blob: each is copied once.
    assert sorted(run.result["copied"]) == sorted(
        layer.relpath for layer in fleet.distinct_blobs("llama3.2:3b").values()
    )
    assert hf_weights.relpath in run.result["linked"]
    assert set(run.result["models_added"]) == {
        "registry.ollama.ai/library/llama3.2:3b",
        "registry.ollama.ai/library/llama3.2:latest",
        qualified(HF_MODEL),
    }


def test_second_run_with_the_same_models_reports_no_change(
    fleet: SyntheticStore, tmp_path: Path
) -> None:
    args = {"source": fleet.root, "dest": tmp_path / "ram", "models": ["llama3.2:3b"]}
    run_module("ollama_ramdisk_populate", args)

    second = run_module("ollama_ramdisk_populate", args)

    assert second.status == 0, second.msg
    assert second.changed is False
    assert second.result["copied"] == []
    assert second.result["bytes_copied"] == 0
    assert second.result["skipped"] == len(fleet.distinct_blobs("llama3.2:3b"))


def test_check_mode_is_a_dry_run_that_writes_nothing(fleet: SyntheticStore, tmp_path: Path) -> None:
    dest = tmp_path / "ram"
    dest.mkdir()

    run = run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["llama3.2:1b"]},
        check_mode=True,
    )

    assert run.status == 0, run.msg
    assert run.changed
    assert run.result["dry_run"] is True
    assert sorted(run.result["copied"]) == sorted(
        layer.relpath for layer in fleet.models["llama3.2:1b"].blobs
    )
    assert list(dest.iterdir()) == []


def test_diff_shows_models_added_removed_and_linked(fleet: SyntheticStore, tmp_path: Path) -> None:
    dest = tmp_path / "ram"
    run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["llama3.2:1b", "qwen2.5-coder:7b"]},
    )

    run = run_module(
        "ollama_ramdisk_populate",
        {
            "source": fleet.root,
            "dest": dest,
            "models": ["llama3.2:1b"],
            "cold_models": [HF_MODEL],
            "prune": True,
        },
        diff=True,
    )

    assert run.status == 0, run.msg
    diff = run.result["diff"]
    assert diff["before"] == (
        "ram: registry.ollama.ai/library/llama3.2:1b\n"
        "ram: registry.ollama.ai/library/qwen2.5-coder:7b\n"
    )
    assert diff["after"] == (
        f"ram: registry.ollama.ai/library/llama3.2:1b\nlinked: {qualified(HF_MODEL)}\n"
    )
    assert run.result["models_removed"] == ["registry.ollama.ai/library/qwen2.5-coder:7b"]
    assert run.result["models_added"] == [qualified(HF_MODEL)]


def test_check_mode_diff_predicts_what_the_real_run_does(
    fleet: SyntheticStore, tmp_path: Path
) -> None:
    dest = tmp_path / "ram"
    run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["qwen2.5-coder:7b"]},
    )
    args = {
        "source": fleet.root,
        "dest": dest,
        "models": ["llama3.2:1b"],
        "cold_models": [HF_MODEL],
        "prune": True,
    }

    checked = run_module("ollama_ramdisk_populate", args, check_mode=True, diff=True)
    applied = run_module("ollama_ramdisk_populate", args, diff=True)

    assert checked.status == 0, checked.msg
    assert checked.result["diff"] == applied.result["diff"]
    assert checked.result["models_added"] == applied.result["models_added"]
    assert checked.result["models_removed"] == applied.result["models_removed"]


def test_check_mode_diff_of_a_store_that_does_not_exist_yet(
    fleet: SyntheticStore, tmp_path: Path
) -> None:
    (tmp_path / "ram").mkdir()
    dest = tmp_path / "ram" / "models"

    run = run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["llama3.2:1b"]},
        check_mode=True,
        diff=True,
    )

    assert run.status == 0, run.msg
    assert run.result["diff"]["before"] == ""
    assert run.result["diff"]["after"] == "ram: registry.ollama.ai/library/llama3.2:1b\n"
    assert not dest.exists()


def test_unmounted_ram_disk_is_refused_not_created(fleet: SyntheticStore, tmp_path: Path) -> None:
    dest = tmp_path / "ram" / "models"

    run = run_module(
        "ollama_ramdisk_populate", {"source": fleet.root, "dest": dest, "models": ["llama3.2:1b"]}
    )

    assert run.failed
    assert "is the RAM disk mounted?" in run.msg
    assert str(dest) in run.msg
    assert not (tmp_path / "ram").exists()


def test_invalid_name_fails_naming_it_before_writing(fleet: SyntheticStore, tmp_path: Path) -> None:
    dest = tmp_path / "ram"

    run = run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["llama3.2:1b", "m;rm -rf /"]},
    )

    assert run.failed
    assert run.result["exit_code"] == 2
    assert "'m;rm -rf /'" in run.msg
    assert not dest.exists() or _files(dest) == []


def test_model_missing_from_source_is_named(fleet: SyntheticStore, tmp_path: Path) -> None:
    run = run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": tmp_path / "ram", "models": ["absent:70b"]},
    )

    assert run.failed
    assert run.result["exit_code"] == 2
    assert "absent:70b" in run.msg
    assert str(fleet.root) in run.msg


def test_too_little_room_fails_and_leaves_nothing_partial(
    tmp_path: Path, tmpfs: MountTmpfs
) -> None:
    source = make_store(
        tmp_path / "disk", {"big:1b": [weights(3 * MIB, "big"), LICENSE_LLAMA, TEMPLATE_CHAT]}
    )
    dest = tmpfs("1m") / "models"

    run = run_module(
        "ollama_ramdisk_populate", {"source": source.root, "dest": dest, "models": ["big:1b"]}
    )

    assert run.status == 1
    assert run.result["exit_code"] == 1
    assert str(dest) in run.msg
    assert not dest.exists() or _files(dest) == []


def test_fallback_link_serves_what_does_not_fit_from_disk(
    tmp_path: Path, tmpfs: MountTmpfs
) -> None:
    big_weights = weights(3 * MIB, "big")
    source = make_store(tmp_path / "disk", {"big:1b": [big_weights, LICENSE_LLAMA, TEMPLATE_CHAT]})
    dest = tmpfs("1m") / "models"

    run = run_module(
        "ollama_ramdisk_populate",
        {"source": source.root, "dest": dest, "models": ["big:1b"], "fallback_link": True},
    )

    assert run.status == 0, run.msg
    spec = source.models["big:1b"]
    # Whole models are kept together: the one that does not fit is linked, every blob.
    assert run.result["fallback"] == sorted(layer.relpath for layer in spec.blobs)
    assert run.result["copied"] == []
    assert (dest / big_weights.relpath).resolve() == source.blob_path(big_weights).resolve()
    warnings = json.dumps(run.result["warnings"])
    assert f"{big_weights.relpath} (3.0 MiB, needed by" in warnings
    assert (dest / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()


def test_prune_keeps_a_model_that_exists_only_in_ram(fleet: SyntheticStore, tmp_path: Path) -> None:
    dest = tmp_path / "ram"
    run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["qwen2.5-coder:7b"]},
    )
    pulled = make_store(dest, {"pulled:7b": [weights(10_000, "pulled"), LICENSE_LLAMA]})

    run = run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["llama3.2:1b"], "prune": True},
    )

    assert run.status == 0, run.msg
    assert run.result["ram_only"] == ["registry.ollama.ai/library/pulled:7b"]
    spec = pulled.models["pulled:7b"]
    assert (dest / spec.manifest_relpath).read_bytes() == spec.manifest_bytes()
    assert "manifests/registry.ollama.ai/library/qwen2.5-coder/7b" in run.result["pruned"]
    assert not (dest / fleet.models["qwen2.5-coder:7b"].manifest_relpath).exists()


def test_owner_is_applied_to_what_is_created(fleet: SyntheticStore, tmp_path: Path) -> None:
    dest = tmp_path / "ram"

    run = run_module(
        "ollama_ramdisk_populate",
        {"source": fleet.root, "dest": dest, "models": ["llama3.2:1b"], "owner": "nobody"},
    )

    assert run.status == 0, run.msg
    created = [
        dest / fleet.models["llama3.2:1b"].manifest_relpath,
        *(dest / "blobs").iterdir(),
    ]
    assert {path.stat().st_uid for path in created} == {pwd.getpwnam("nobody").pw_uid}
