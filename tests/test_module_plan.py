"""ollama_ramdisk_plan: the sizing plan as module output, run as Ansible runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from module_harness import REPO, run_module
from storegen import LICENSE_LLAMA, TEMPLATE_CHAT, SyntheticStore, make_store, weights

GIB = 1024**3
MIB = 1024**2
SYSTEM_PYTHON = "/usr/bin/python3"
HF_MODEL = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"


def test_plan_counts_shared_blobs_once(fleet: SyntheticStore) -> None:
    hot = ["llama3.2:3b", "llama3.2:latest", "llama3.2:1b"]

    run = run_module(
        "ollama_ramdisk_plan", {"source": fleet.root, "models": hot, "mem_total": "64g"}
    )

    assert run.status == 0, run.msg
    assert run.changed is False
    plan = run.result["plan"]
    assert plan["blob_count"] == len(fleet.distinct_blobs(*hot))
    assert plan["bytes"] == fleet.bytes_of(*hot)
    assert [model["name"] for model in plan["models"]] == [
        "registry.ollama.ai/library/llama3.2:3b",
        "registry.ollama.ai/library/llama3.2:latest",
        "registry.ollama.ai/library/llama3.2:1b",
    ]
    assert plan["size_bytes"] >= plan["tmpfs_bytes"] * 1.2
    assert plan["size_bytes"] % MIB == 0
    assert plan["fits"] is True
    assert plan["mem_total"] == 64 * GIB


def test_cold_models_are_validated_but_not_counted(fleet: SyntheticStore) -> None:
    hot_only = run_module("ollama_ramdisk_plan", {"source": fleet.root, "models": ["llama3.2:1b"]})
    with_cold = run_module(
        "ollama_ramdisk_plan",
        {"source": fleet.root, "models": ["llama3.2:1b"], "cold_models": [HF_MODEL]},
    )

    assert with_cold.status == 0, with_cold.msg
    assert with_cold.result["plan"]["bytes"] == hot_only.result["plan"]["bytes"]
    assert with_cold.result["plan"]["cold_models"] == [HF_MODEL]


def test_set_larger_than_memory_fails_saying_what_to_change(fleet: SyntheticStore) -> None:
    run = run_module(
        "ollama_ramdisk_plan",
        {"source": fleet.root, "models": ["llama3.2:3b"], "mem_total": "1g", "reserve": "1g"},
    )

    assert run.status == 1
    assert run.failed
    assert run.msg.startswith("the model set does not fit: it needs a RAM disk of 1m")
    assert "the host has 1.0 GiB of memory and 1.0 GiB must stay free (reserve)" in run.msg
    assert "fewer or smaller models" in run.msg
    assert "a lower headroom" in run.msg
    assert "a smaller reserve" in run.msg
    # The plan comes back too, so that a playbook can show the figures.
    assert run.result["plan"]["fits"] is False
    assert run.result["plan"]["reserve"] == GIB


def test_every_bad_name_and_missing_model_is_reported_together(fleet: SyntheticStore) -> None:
    run = run_module(
        "ollama_ramdisk_plan",
        {
            "source": fleet.root,
            "models": ["../x", "llama3.2:1b", "absent:7b"],
            "cold_models": ["a/b/c/d"],
        },
    )

    assert run.status == 1
    assert run.result["exit_code"] == 2
    assert "'../x'" in run.msg
    assert "absent:7b" in run.msg
    assert "'a/b/c/d'" in run.msg


def test_missing_blob_names_the_file_and_model(fleet: SyntheticStore) -> None:
    blob = fleet.blob_path(fleet.models["llama3.2:1b"].layers[0])
    blob.unlink()

    run = run_module("ollama_ramdisk_plan", {"source": fleet.root, "models": ["llama3.2:1b"]})

    assert run.failed
    assert str(blob) in run.msg
    assert "llama3.2:1b" in run.msg


def test_headroom_below_one_is_refused(fleet: SyntheticStore) -> None:
    run = run_module(
        "ollama_ramdisk_plan", {"source": fleet.root, "models": ["llama3.2:1b"], "headroom": 0.9}
    )

    assert run.failed
    assert run.msg.startswith("headroom: 0.9 is below 1.0")


def test_bad_size_syntax_names_the_option(fleet: SyntheticStore) -> None:
    run = run_module(
        "ollama_ramdisk_plan", {"source": fleet.root, "models": ["llama3.2:1b"], "reserve": "lots"}
    )

    assert run.failed
    assert run.msg.startswith("reserve: 'lots' is not a SIZE")


def test_source_that_is_not_a_directory_is_named(tmp_path: Path) -> None:
    run = run_module("ollama_ramdisk_plan", {"source": tmp_path / "nowhere", "models": ["m"]})

    assert run.failed
    assert run.msg == f"source: {tmp_path / 'nowhere'} is not a directory"


def test_forced_size_below_the_set_warns_but_returns_the_plan(tmp_path: Path) -> None:
    store = make_store(
        tmp_path / "store", {"big:1b": [weights(3 * MIB, "big"), LICENSE_LLAMA, TEMPLATE_CHAT]}
    )

    run = run_module(
        "ollama_ramdisk_plan", {"source": store.root, "models": ["big:1b"], "size": "1m"}
    )

    assert run.status == 0, run.msg
    assert run.result["plan"]["size"] == "1m"
    assert run.result["plan"]["size_override"] is True
    assert run.result["plan"]["holds_set"] is False
    warnings = [json.dumps(warning) for warning in run.result["warnings"]]
    assert any("is below the 3.0 MiB the hot models need" in warning for warning in warnings)


def test_check_mode_gives_the_same_plan(fleet: SyntheticStore) -> None:
    args = {"source": fleet.root, "models": ["llama3.2:3b"], "mem_total": "32g"}

    normal = run_module("ollama_ramdisk_plan", args)
    checked = run_module("ollama_ramdisk_plan", args, check_mode=True)

    assert checked.status == 0, checked.msg
    assert checked.result["plan"] == normal.result["plan"]


def test_ansible_packs_the_core_package_with_its_relative_imports(fleet: SyntheticStore) -> None:
    """A real `ansible` ad hoc run: the module packer must ship the whole core."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.minimal",
        # `make` forces colour outside CI; the JSON is read back here.
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
    }
    args = json.dumps(
        {"source": str(fleet.root), "models": ["llama3.2:latest"], "mem_total": "16g"}
    )
    completed = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "ansible"),
            "localhost",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-m",
            "ollama_ramdisk_plan",
            "-e",
            # The system interpreter, which cannot import the core on its own.
            f"ansible_python_interpreter={SYSTEM_PYTHON}",
            "-a",
            args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    output = completed.stdout
    result = json.loads(output[output.index("{") :])
    assert result["plan"]["models"][0]["name"] == "registry.ollama.ai/library/llama3.2:latest"
    assert result["plan"]["mem_total"] == 16 * GIB
