"""ollama_ramdisk_pull and ollama_ramdisk_push, run as Ansible runs them, against
the real Ollama and a real registry on loopback (real_parts.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from module_harness import run_module
from real_parts import Registry

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the real Ollama runs as root here")


def test_push_then_check_mode_then_pull_then_nothing(
    registry: Registry, disk_store: Path, ollama_prefix: Path, tmp_path: Path
) -> None:
    binary = str(ollama_prefix / "bin" / "ollama")
    mirror = {"mirror": registry.address, "insecure": True, "ollama_binary": binary}
    pushed = run_module(
        "ollama_ramdisk_push", {"source": disk_store, "models": ["mistral:7b"], **mirror}
    )
    assert pushed.status == 0, pushed.msg
    assert pushed.result["pushed"] == ["registry.ollama.ai/library/mistral:7b"]
    again = run_module(
        "ollama_ramdisk_push", {"source": disk_store, "models": ["mistral:7b"], **mirror}
    )
    assert again.changed is False
    assert again.result["present"] == ["registry.ollama.ai/library/mistral:7b"]

    store = tmp_path / "store"
    store.mkdir()
    args = {"source": store, "models": ["mistral:7b"], **mirror}
    preview = run_module("ollama_ramdisk_pull", args, check_mode=True)
    assert preview.status == 0, preview.msg
    assert preview.changed is True
    assert preview.result["dry_run"] is True
    assert [model["name"] for model in preview.result["pulled"]] == [
        "registry.ollama.ai/library/mistral:7b"
    ]
    assert list(store.iterdir()) == []

    pulled = run_module("ollama_ramdisk_pull", args)
    assert pulled.status == 0, pulled.msg
    assert pulled.changed is True
    assert pulled.result["bytes_fetched"] == preview.result["pulled"][0]["fetch_bytes"]
    assert (store / "manifests/registry.ollama.ai/library/mistral/7b").is_file()

    second = run_module("ollama_ramdisk_pull", args)
    assert second.changed is False
    assert second.result["present"] == ["registry.ollama.ai/library/mistral:7b"]


def test_a_model_the_mirror_lacks_fails_the_module_naming_it(
    registry: Registry, ollama_prefix: Path, tmp_path: Path
) -> None:
    run = run_module(
        "ollama_ramdisk_pull",
        {"source": tmp_path, "models": ["qwen2.5:72b"], "mirror": registry.address,
         "insecure": True, "ollama_binary": str(ollama_prefix / "bin" / "ollama")},
    )  # fmt: skip
    assert run.status == 1
    assert run.result["exit_code"] == 1
    assert f"model qwen2.5:72b cannot be pulled from {registry.address}" in run.msg
