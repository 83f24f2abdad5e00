"""The ollama_ramdisk role applied for real to this machine with ansible-playbook.

What Molecule's default scenario proves on systemd instances (the fill, the
second run changing nothing, the resize in place) is not repeated here; these
are the paths it does not take: check and diff mode, a refusal, removal.

Everything lives in a temporary directory: the disk store, the mount point
(a real tmpfs), the fstab the role writes (ollama_ramdisk_fstab), the
installed core and its configuration. Root is needed to mount tmpfs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
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
    tmpfs_has_huge_pages,
    weights,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting tmpfs needs root"),
]

MIB = 1024 * 1024
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
    """One ansible-playbook run: exit status, per-task results and its output."""

    status: int
    output: dict[str, Any]
    text: str

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

    @property
    def units(self) -> Path:
        return self.root / "systemd"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

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
            "ollama_ramdisk_systemd_dir": str(self.units),
            "ollama_ramdisk_state_dir": str(self.state_dir),
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
    machine.units.mkdir()
    try:
        yield machine
    finally:
        while machine.mount() is not None:
            subprocess.run(["umount", str(machine.mountpoint)], check=True)


def _pull_into_ram(host: Host) -> SyntheticStore:
    """A model pulled into the RAM disk by a user: it is not in the disk store."""
    return make_store(host.dest, {"pulled:7b": [weights(20_000, "pulled"), LICENSE_LLAMA]})


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
    assert fill["diff"]["before"] == "ram: registry.ollama.ai/library/llama3.2:1b\n"
    assert fill["diff"]["after"] == "ram: registry.ollama.ai/library/llama3.2:3b\n"
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
    assert list(host.units.iterdir()) == []
    record = json.loads((host.source / "ollama-ramdisk-written-back.json").read_text())
    assert record["models"] == ["registry.ollama.ai/library/pulled:7b"]


def test_the_write_back_units_follow_the_variable(host: Host) -> None:
    host.prepare(["llama3.2:1b"])
    names = [f"ollama-ramdisk-writeback.{kind}" for kind in ("service", "path", "timer")]
    unit = {name: (host.units / name) for name in names}

    on = host.apply(ollama_ramdisk_writeback_interval="45s")
    units = {name: path.read_text() for name, path in unit.items()}
    again = host.apply(ollama_ramdisk_writeback_interval="45s")
    off = host.apply(ollama_ramdisk_writeback=False)

    assert on.status == 0, on.failure() or on.text
    service, path, timer = units.values()
    assert f"ExecStart={host.cli} writeback --config {host.config} --forget-removed" in service
    assert f"ReadWritePaths=-{host.source} -{host.dest}" in service
    assert f"PathChanged={host.dest}/manifests/registry.ollama.ai/library" in path
    assert "BindsTo=ollama.service" in path
    assert "OnUnitInactiveSec=45s" in timer
    assert "BindsTo=ollama.service" in timer
    config = json.loads(host.config.read_text())
    assert config["writeback-reserve"] == "1g"
    assert again.status == 0
    assert again.task("Install the write-back units")["changed"] is False
    assert off.status == 0, off.failure() or off.text
    assert not any(path.exists() for path in unit.values())


def test_a_bad_write_back_interval_fails_before_any_change(host: Host) -> None:
    refused = host.apply(ollama_ramdisk_writeback_interval="soon")

    assert refused.status != 0
    assert "ollama_ramdisk_writeback_interval" in refused.failure()
    assert host.mount() is None
    assert list(host.units.iterdir()) == []


def test_the_metrics_and_check_timers_follow_their_variables(host: Host) -> None:
    host.prepare(["llama3.2:1b"])
    textfiles = host.root / "textfile"
    settings = {
        "ollama_ramdisk_metrics_dir": str(textfiles),
        "ollama_ramdisk_metrics_interval": "20s",
        "ollama_ramdisk_verify_schedule": "Sun *-*-* 03:00",
        "ollama_ramdisk_verify_repair": True,
    }
    names = [
        f"ollama-ramdisk-{unit}.{kind}"
        for unit in ("metrics", "verify")
        for kind in ("service", "timer")
    ]

    on = host.apply(**settings)
    units = {name: (host.units / name).read_text() for name in names}
    again = host.apply(**settings)
    off = host.apply()

    assert on.status == 0, on.failure() or on.text
    metrics, metrics_timer, verify, verify_timer = units.values()
    assert (
        f"ExecStart={host.cli} status --config {host.config} --ollama-host 127.0.0.1:11434"
        f" --state-dir {host.state_dir} --prometheus {textfiles}/ollama_ramdisk.prom"
        " --verify-unit ollama-ramdisk-verify.service\n"
    ) in metrics
    assert f"ReadWritePaths={textfiles}\n" in metrics
    assert "OnUnitActiveSec=20s" in metrics_timer
    assert f"--store {host.dest} --repair --source {host.source} --jobs 1" in verify
    for line in ("Nice=19", "IOSchedulingClass=idle", "CPUQuota=50%", "PrivateNetwork=true"):
        assert f"{line}\n" in verify
    refresh = "ExecStopPost=-+/usr/bin/systemctl start --no-block ollama-ramdisk-metrics.service"
    assert refresh in verify
    assert f"ConditionPathIsMountPoint={host.mountpoint}" in verify
    assert "OnCalendar=Sun *-*-* 03:00" in verify_timer
    assert textfiles.is_dir()
    assert host.state_dir.is_dir()
    assert json.loads(host.config.read_text())["state-dir"] == str(host.state_dir)
    assert again.status == 0
    assert again.task("Install the metrics and check units that are on")["changed"] is False
    assert off.status == 0, off.failure() or off.text
    assert not any((host.units / name).exists() for name in names)
    # The run reports stay: they are the metrics' history, not units.
    assert host.state_dir.is_dir()


# systemd-analyze security's "OK" ends at 4.9 (then MEDIUM, EXPOSED, UNSAFE).
EXPOSURE_OK = 4.9


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_every_service_the_role_installs_rates_ok_or_better(host: Host) -> None:
    host.prepare(["llama3.2:1b"])
    applied = host.apply(
        ollama_ramdisk_writeback=True,
        ollama_ramdisk_metrics_dir=str(host.root / "textfile"),
        ollama_ramdisk_verify_schedule="daily",
    )
    assert applied.status == 0, applied.failure() or applied.text

    services = sorted(host.units.glob("*.service"))
    scores = {}
    for service in services:
        rated = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", str(service)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", rated.stdout)
        assert found, rated.stdout + rated.stderr
        scores[service.name] = (float(found.group(1)), found.group(2))

    assert [path.stem for path in services] == [
        "ollama-ramdisk-metrics", "ollama-ramdisk-verify", "ollama-ramdisk-writeback",
    ]  # fmt: skip
    assert all(score <= EXPOSURE_OK for score, _ in scores.values()), scores


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ollama_ramdisk_verify_schedule", "daily; reboot"),
        ("ollama_ramdisk_verify_cpu_quota", "half"),
        ("ollama_ramdisk_metrics_interval", "often"),
        ("ollama_ramdisk_metrics_dir", "relative/dir"),
        ("ollama_ramdisk_metrics_ollama_host", "127.0.0.1:11434\nExecStart=/bin/sh"),
    ],
)
def test_a_bad_monitoring_setting_fails_before_any_change(
    host: Host, variable: str, value: str
) -> None:
    refused = host.apply(**{variable: value})

    assert refused.status != 0
    assert variable in refused.failure()
    assert host.mount() is None
    assert list(host.units.iterdir()) == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_a_schedule_systemd_cannot_read_fails_before_any_change(host: Host) -> None:
    refused = host.apply(ollama_ramdisk_verify_schedule="every full moon")

    assert refused.status != 0
    assert "which systemd does not read as a calendar spec" in refused.failure()
    assert host.mount() is None
    assert list(host.units.iterdir()) == []


@pytest.fixture
def machine_swap_lock() -> Iterator[None]:
    """Swap is the whole machine's: the tests that add it or need none take turns,
    whichever pytest process or worker runs them (an flock, held for the test).
    They are marked ``machine_swap``: `make test` runs them apart, after the
    Molecule instances (which share this kernel, and so its swap) are gone."""
    with open("/var/tmp/ollama-ramdisk-test-swap.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def swap(machine_swap_lock: None) -> Iterator[Path]:
    """Real swap on this machine for the test's length (a swap file)."""
    swapfile = Path("/var/tmp") / f"ollama-ramdisk-test-{os.getpid()}.swap"
    subprocess.run(["dd", "if=/dev/zero", f"of={swapfile}", "bs=1M", "count=32"], check=True,
                   capture_output=True)  # fmt: skip
    swapfile.chmod(0o600)
    subprocess.run(["mkswap", str(swapfile)], check=True, capture_output=True)
    on = subprocess.run(["swapon", str(swapfile)], capture_output=True, text=True, check=False)
    if on.returncode != 0:
        swapfile.unlink()
        pytest.skip(f"swap cannot be enabled here: {on.stderr.strip()}")
    try:
        yield swapfile
    finally:
        subprocess.run(["swapoff", str(swapfile)], check=True)
        swapfile.unlink()


@pytest.mark.usefixtures("machine_swap_lock")
@pytest.mark.machine_swap
def test_without_swap_the_role_says_so_and_adds_no_option(host: Host) -> None:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    if int(meminfo["SwapTotal"].split()[0]) != 0:
        pytest.skip("this machine has swap")

    applied = host.apply()

    assert applied.status == 0, applied.failure() or applied.text
    said = applied.task("Say how the RAM disk stays out of swap")["msg"]
    assert said == "The host has no swap: nothing can swap the RAM disk out."
    mount = host.mount()
    assert mount is not None
    assert "noswap" not in mount["options"]


@pytest.mark.machine_swap
def test_with_swap_the_ram_disk_is_mounted_noswap(host: Host, swap: Path) -> None:
    applied = host.apply()

    assert applied.status == 0, applied.failure() or applied.text
    said = applied.task("Say how the RAM disk stays out of swap")["msg"]
    assert said.startswith("The RAM disk is mounted with tmpfs noswap")
    mount = host.mount()
    assert mount is not None
    assert "noswap" in mount["options"].split(",")
    assert "noswap" in host.fstab.read_text()


@pytest.mark.machine_swap
def test_noswap_false_with_swap_says_the_ram_disk_can_be_swapped(host: Host, swap: Path) -> None:
    applied = host.apply(ollama_ramdisk_noswap=False)

    assert applied.status == 0, applied.failure() or applied.text
    said = applied.task("Say how the RAM disk stays out of swap")["msg"]
    assert "the RAM disk can be swapped out" in said
    mount = host.mount()
    assert mount is not None
    assert "noswap" not in mount["options"].split(",")


def _contents(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: inode and bytes (a remount keeps both)."""
    return {
        str(path.relative_to(root)): (path.stat().st_ino, path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.skipif(
    not tmpfs_has_huge_pages(),
    reason="this kernel's tmpfs has no transparent huge pages",
)
def test_huge_pages_by_default_reach_a_mounted_ram_disk_by_remount_keeping_its_contents(
    host: Host,
) -> None:
    host.prepare(["llama3.2:1b"])
    before = _contents(host.dest)

    applied = host.apply()
    live, fstab = host.mount(), host.fstab.read_text()
    off = host.apply(ollama_ramdisk_huge="never")

    assert applied.status == 0, applied.failure() or applied.text
    remount = "Grow the RAM disk in place, or apply its changed options, keeping its contents"
    assert applied.task(remount)["changed"]
    assert live is not None
    assert "huge=within_size" in live["options"]
    assert "huge=within_size" in fstab
    assert off.status == 0, off.failure() or off.text
    mount = host.mount()
    assert mount is not None
    assert "huge=within_size" not in mount["options"]
    assert "huge=within_size" not in host.fstab.read_text()
    assert _contents(host.dest) == before
