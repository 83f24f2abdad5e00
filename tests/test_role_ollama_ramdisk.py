"""The ollama_ramdisk role applied for real to this machine with ansible-playbook.

Everything lives in a temporary directory: the disk store, the mount point
(a real tmpfs), the fstab the role writes (ollama_ramdisk_fstab), the
installed core and its configuration. Root is needed to mount tmpfs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from module_harness import REPO
from ollama_ramdisk.populate import PopulateOptions, populate
from storegen import (
    LICENSE_LLAMA,
    TEMPLATE_CHAT,
    SyntheticStore,
    fleet_store,
    make_store,
    weights,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root"),
]

MIB = 1024 * 1024
HF_MODEL = "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"
BIG_WEIGHTS = weights(3 * MIB, "big")
SYSTEM_PYTHON = "/usr/bin/python3"

PLAYBOOK = """\
- name: Apply the role to this machine
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: ollama_ramdisk
"""


@dataclass
class Applied:
    """One ansible-playbook run: exit status, per-task results and totals."""

    status: int
    output: dict[str, Any]
    text: str

    @property
    def stats(self) -> dict[str, int]:
        return self.output["stats"]["localhost"]

    def task(self, name: str) -> dict[str, Any]:
        for play in self.output["plays"]:
            for task in play["tasks"]:
                # Tasks of a role are reported as "ROLE : NAME".
                if task["task"]["name"].rpartition(" : ")[2] == name:
                    return task["hosts"]["localhost"]
        raise KeyError(name)

    def failure(self) -> str:
        for play in self.output["plays"]:
            for task in play["tasks"]:
                result = task["hosts"].get("localhost", {})
                if result.get("failed"):
                    return str(result.get("msg"))
        return ""


@dataclass
class Host:
    """The temporary machine the role is applied to."""

    root: Path
    disk: SyntheticStore

    @property
    def source(self) -> Path:
        return self.root / "disk"

    @property
    def mountpoint(self) -> Path:
        return self.root / "ram"

    @property
    def dest(self) -> Path:
        return self.mountpoint / "models"

    @property
    def fstab(self) -> Path:
        return self.root / "fstab"

    @property
    def config(self) -> Path:
        return self.root / "etc" / "config.json"

    @property
    def cli(self) -> Path:
        return self.root / "bin" / "ollama-ramdisk"

    @property
    def install_dir(self) -> Path:
        return self.root / "opt"

    def variables(self, **overrides: Any) -> dict[str, Any]:
        return {
            "ollama_ramdisk_models": ["llama3.2:1b"],
            "ollama_ramdisk_source": str(self.source),
            "ollama_ramdisk_path": str(self.mountpoint),
            "ollama_ramdisk_user": "root",
            "ollama_ramdisk_group": "root",
            "ollama_ramdisk_fstab": str(self.fstab),
            "ollama_ramdisk_install_dir": str(self.install_dir),
            "ollama_ramdisk_cli_path": str(self.cli),
            "ollama_ramdisk_config_path": str(self.config),
            "ollama_ramdisk_async_poll": 1,
            "ansible_python_interpreter": SYSTEM_PYTHON,
            **overrides,
        }

    def apply(self, check: bool = False, diff: bool = False, **overrides: Any) -> Applied:
        playbook = self.root / "play.yml"
        playbook.write_text(PLAYBOOK)
        variables = self.root / "vars.json"
        variables.write_text(json.dumps(self.variables(**overrides)))
        command = [
            str(REPO / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            f"@{variables}",
        ]
        command += ["--check"] if check else []
        command += ["--diff"] if diff else []
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_DEPRECATION_WARNINGS": "false",
            "ANSIBLE_PIPELINING": "true",
        }
        completed = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        output = completed.stdout
        return Applied(
            status=completed.returncode,
            output=json.loads(output[output.index("{") :]),
            text=output + completed.stderr,
        )

    def prepare(self, models: list[str]) -> None:
        """A RAM disk as an earlier run of the role left it: 1 MiB, in fstab, filled."""
        options = "size=1m,mode=0755,uid=0,gid=0,nosuid,nodev,noexec"
        self.mountpoint.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.mountpoint)], check=True
        )
        with self.fstab.open("a") as fstab:
            fstab.write(f"tmpfs {self.mountpoint} tmpfs {options} 0 0\n")
        populate(PopulateOptions(source=self.source, dest=self.dest, models=models))

    def mount(self) -> dict[str, Any] | None:
        """The live mount at the mount point, as findmnt reports it."""
        found = subprocess.run(
            [
                "findmnt",
                "--json",
                "--bytes",
                "--output",
                "FSTYPE,SIZE,USED,OPTIONS",
                "--mountpoint",
                str(self.mountpoint),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            return None
        return json.loads(found.stdout)["filesystems"][-1]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    disk = fleet_store(tmp_path / "disk")
    disk.add("big:1b", [BIG_WEIGHTS, LICENSE_LLAMA, TEMPLATE_CHAT])
    machine = Host(tmp_path, disk)
    machine.fstab.write_text("# static file system information\n")
    try:
        yield machine
    finally:
        while machine.mount() is not None:
            subprocess.run(["umount", str(machine.mountpoint)], check=True)


def _holds_copy(host: Host, name: str) -> bool:
    """The model's manifest and blobs are regular files, byte-identical to the disk's."""
    spec = host.disk.models[name]
    if (host.dest / spec.manifest_relpath).read_bytes() != spec.manifest_bytes():
        return False
    return all(
        not (host.dest / layer.relpath).is_symlink()
        and (host.dest / layer.relpath).read_bytes() == layer.content
        for layer in spec.blobs
    )


def _pull_into_ram(host: Host) -> SyntheticStore:
    """A model pulled into the RAM disk by a user: it is not in the disk store."""
    return make_store(host.dest, {"pulled:7b": [weights(20_000, "pulled"), LICENSE_LLAMA]})


def test_role_mounts_and_fills_the_ram_disk_and_a_second_run_changes_nothing(
    host: Host,
) -> None:
    models = {"ollama_ramdisk_models": ["llama3.2:3b", "llama3.2:1b"]}
    cold = {"ollama_ramdisk_cold_models": [HF_MODEL]}

    first = host.apply(**models, **cold)

    assert first.status == 0, first.failure() or first.text
    assert host.fstab.read_text().splitlines()[-1] == (
        f"tmpfs {host.mountpoint} tmpfs size=1m,mode=0755,uid=0,gid=0,nosuid,nodev,noexec 0 0"
    )
    mount = host.mount()
    assert mount is not None
    assert mount["fstype"] == "tmpfs"
    assert mount["size"] == MIB
    assert {"nosuid", "nodev", "noexec", "mode=755"} <= set(mount["options"].split(","))
    assert _holds_copy(host, "llama3.2:3b")
    assert _holds_copy(host, "llama3.2:1b")
    hf_weights = host.disk.models[HF_MODEL].layers[0]
    assert (host.dest / hf_weights.relpath).is_symlink()
    config = json.loads(host.config.read_text())
    assert config["source"] == str(host.source)
    assert config["dest"] == str(host.dest)
    assert config["models"] == ["llama3.2:3b", "llama3.2:1b"]
    assert config["cold"] == [HF_MODEL]
    assert config["fallback-link"] is True
    assert (host.install_dir / "ollama_ramdisk" / "populate.py").is_file()
    status = subprocess.run(
        [str(host.cli), "--config", str(host.config), "status", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    residency = {model["name"]: model["residency"] for model in json.loads(status.stdout)["models"]}
    assert residency["registry.ollama.ai/library/llama3.2:3b"] == "ram"
    assert residency["hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"] == "linked"

    second = host.apply(**models, **cold)

    assert second.status == 0, second.failure() or second.text
    assert second.stats["changed"] == 0


def test_role_grows_in_place_before_filling_and_shrinks_after_pruning(host: Host) -> None:
    host.prepare(["llama3.2:1b"])
    pulled = _pull_into_ram(host).models["pulled:7b"]

    grown = host.apply(ollama_ramdisk_models=["llama3.2:1b", "big:1b"])

    assert grown.status == 0, grown.failure() or grown.text
    mount = host.mount()
    assert mount is not None
    assert mount["size"] == 4 * MIB
    assert _holds_copy(host, "big:1b")
    # Grown in place: the model pulled into RAM before is still there.
    assert (host.dest / pulled.manifest_relpath).read_bytes() == pulled.manifest_bytes()

    shrunk = host.apply(ollama_ramdisk_models=["llama3.2:1b"])

    assert shrunk.status == 0, shrunk.failure() or shrunk.text
    mount = host.mount()
    assert mount is not None
    assert mount["size"] == MIB
    assert not (host.dest / host.disk.models["big:1b"].manifest_relpath).exists()
    assert not (host.dest / BIG_WEIGHTS.relpath).exists()
    assert (host.dest / pulled.manifest_relpath).read_bytes() == pulled.manifest_bytes()
    assert "size=1m," in host.fstab.read_text()


def test_check_mode_previews_a_first_deployment_without_changing_anything(host: Host) -> None:
    fstab_before = host.fstab.read_text()

    preview = host.apply(check=True, diff=True, ollama_ramdisk_models=["llama3.2:1b", "big:1b"])

    assert preview.status == 0, preview.failure() or preview.text
    assert host.fstab.read_text() == fstab_before
    assert host.mount() is None
    assert not host.mountpoint.exists()
    assert not host.config.exists()
    assert not host.cli.exists()
    assert preview.task("Declare the RAM disk in /etc/fstab")["changed"] is True
    assert preview.task("Mount the RAM disk")["changed"] is True
    fill = preview.task("Preview the fill from the plan (check mode, RAM disk not ready yet)")
    assert f"{host.mountpoint} is not mounted yet" in fill["msg"]
    assert "registry.ollama.ai/library/big:1b" in fill["msg"]


def test_check_mode_previews_a_new_model_set_without_changing_anything(host: Host) -> None:
    host.prepare(["llama3.2:1b"])
    fstab_before = host.fstab.read_text()
    files_before = sorted(path.name for path in host.dest.rglob("*"))

    preview = host.apply(check=True, diff=True, ollama_ramdisk_models=["llama3.2:3b"])

    assert preview.status == 0, preview.failure() or preview.text
    assert host.fstab.read_text() == fstab_before
    mount = host.mount()
    assert mount is not None
    assert mount["size"] == MIB
    assert sorted(path.name for path in host.dest.rglob("*")) == files_before
    fill = preview.task("Fill the RAM disk with the model set")
    assert fill["diff"]["before"] == "hot: registry.ollama.ai/library/llama3.2:1b\n"
    assert fill["diff"]["after"] == "hot: registry.ollama.ai/library/llama3.2:3b\n"
    assert fill["dry_run"] is True
    assert fill["models_removed"] == ["registry.ollama.ai/library/llama3.2:1b"]


def test_a_set_larger_than_memory_fails_before_any_change(host: Host) -> None:
    fstab_before = host.fstab.read_text()

    refused = host.apply(ollama_ramdisk_models=["big:1b"], ollama_ramdisk_reserve="1t")

    assert refused.status != 0
    message = refused.failure()
    assert "does not fit" in message
    assert "ollama_ramdisk_reserve (now 1t)" in message
    assert host.fstab.read_text() == fstab_before
    assert host.mount() is None
    assert not host.mountpoint.exists()


def test_absent_writes_models_only_in_ram_back_and_removes_the_ram_disk(host: Host) -> None:
    host.prepare(["llama3.2:1b"])
    pulled = _pull_into_ram(host).models["pulled:7b"]

    removed = host.apply(ollama_ramdisk_state="absent")

    assert removed.status == 0, removed.failure() or removed.text
    assert host.mount() is None
    assert str(host.mountpoint) not in host.fstab.read_text()
    assert (host.source / pulled.manifest_relpath).read_bytes() == pulled.manifest_bytes()
    for layer in pulled.blobs:
        assert (host.source / layer.relpath).read_bytes() == layer.content
    assert not host.cli.exists()
    assert not host.config.exists()
    assert not host.install_dir.exists()
