"""After a reboot the RAM disk is mounted from /etc/fstab and refilled before Ollama starts."""

from __future__ import annotations

import re
from typing import Any

from conftest import (
    Name,
    Store,
    assert_loads_from,
    assert_no_stray_blobs,
    assert_ram_disk_serves,
    fstab_entries,
    fstab_size,
    journal,
    listed_models,
    live_mount,
    plan_size,
    service_cgroup_shmem,
    snapshot,
)


def monotonic(host: Any, unit: str, prop: str) -> int:
    value = host.run("systemctl show --property=%s --value %s", prop, unit).stdout.strip()
    return int(value or 0)


def test_ram_disk_is_mounted_again_with_its_fstab_size(
    host: Any, hostvars: dict[str, Any], ram_path: str, disk: Store, hot: list[Name]
) -> None:
    mount = live_mount(host, ram_path)
    assert mount is not None, f"{ram_path} is not mounted after the reboot"
    assert mount["fstype"] == "tmpfs"
    options = dict(
        o.split("=", 1) for o in fstab_entries(host, ram_path)[0][3].split(",") if "=" in o
    )
    headroom = float(hostvars.get("ollama_ramdisk_headroom", 1.2))
    assert int(mount["size"]) == fstab_size(options["size"]) == plan_size(disk, hot, headroom)


def test_ram_disk_is_refilled_byte_for_byte(
    host: Any, ram_path: str, disk: Store, hot: list[Name], cold: list[Name]
) -> None:
    ram = snapshot(host, f"{ram_path}/models")
    assert_ram_disk_serves(host, ram, disk, hot, cold)
    assert_no_stray_blobs(ram)


def test_refill_finished_before_the_server_started(
    host: Any, ram_path: str, hot: list[Name], cold: list[Name]
) -> None:
    mount_unit = host.run("systemd-escape --path --suffix=mount %s", ram_path).stdout.strip()
    mounted = monotonic(host, mount_unit, "ActiveEnterTimestampMonotonic")
    started = monotonic(host, "ollama.service", "ExecMainStartTimestampMonotonic")
    assert 0 < mounted < started, (
        f"{mount_unit} became active at {mounted}, ollama started at {started}"
    )
    pre = host.run("systemctl show --property=ExecStartPre ollama.service").stdout
    assert re.search(r"code=exited ; status=0\b", pre), f"ExecStartPre did not succeed: {pre}"
    # The server started once, on a store it could read whole (else it logs
    # that it skips the prune), and removed nothing.
    log = journal(host)
    starts = [line for line in log.splitlines() if "server config" in line]
    assert len(starts) == 1, f"expected one start of the server, found {starts}"
    assert "corrupt manifests detected" not in log
    assert "total unused blobs removed: 0" in log


def test_a_hot_model_answers_from_the_ram_disk_after_the_reboot(
    host: Any, ram: Store, hot: list[Name]
) -> None:
    assert_loads_from(host, ram, hot[0], ram.root)


def test_api_lists_exactly_the_hot_and_cold_models(
    host: Any, hot: list[Name], cold: list[Name]
) -> None:
    assert listed_models(host) == {name.display for name in hot + cold}


def test_the_refill_charged_the_ram_disk_to_the_services_cgroup(
    host: Any, ram_path: str, ram: Store
) -> None:
    # tmpfs pages belong to the cgroup that wrote them: at boot ExecStartPre runs in
    # ollama.service's, so a MemoryMax= there must hold the RAM disk (README, plan).
    mount = live_mount(host, ram_path)
    assert mount is not None
    copied = sum(
        entry["size"] for entry in ram.blobs.values() if entry["regular"] and entry["size"]
    )
    cgroup, shmem = service_cgroup_shmem(host)
    assert "ollama.service" in cgroup
    assert shmem >= copied, (
        f"{cgroup} is charged {shmem} bytes of tmpfs, the RAM disk holds {copied}"
    )
