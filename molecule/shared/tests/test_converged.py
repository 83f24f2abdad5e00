"""A host provisioned by playbooks/site.yml serves its models from a RAM disk."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import (
    CLI,
    CONFIG,
    DROPIN,
    SYSCTL_FILE,
    Name,
    Store,
    api,
    assert_loads_from,
    assert_no_stray_blobs,
    assert_ram_disk_serves,
    cli_listed_models,
    fstab_entries,
    fstab_size,
    journal,
    listed_models,
    live_mount,
    model_blob,
    names,
    plan_size,
    service_env,
)
from ollama_ramdisk.tmpfs_options import THP_SHMEM, huge_setting

DEFAULT_SYSCTL = {"vm.max_map_count": 262144}
DEFAULT_ENVIRONMENT = {"OLLAMA_KEEP_ALIVE": "30m"}


@pytest.fixture(scope="module")
def planned_size(hostvars: dict[str, Any], disk: Store, hot: list[Name]) -> int:
    forced = str(hostvars.get("ollama_ramdisk_size", "") or "")
    if forced:
        return fstab_size(forced)
    return plan_size(disk, hot, float(hostvars.get("ollama_ramdisk_headroom", 1.2)))


def test_fstab_declares_the_ram_disk_with_the_planned_size(
    host: Any, ram_path: str, planned_size: int
) -> None:
    entries = fstab_entries(host, ram_path)
    assert len(entries) == 1, f"expected one /etc/fstab line for {ram_path}, found {entries}"
    source, _, fstype, options = entries[0][:4]
    assert (source, fstype) == ("tmpfs", "tmpfs")
    opts = dict(o.split("=", 1) if "=" in o else (o, "") for o in options.split(","))
    ollama = host.user("ollama")
    assert fstab_size(opts["size"]) == planned_size
    assert opts["mode"] == "0755"
    assert opts["uid"] == str(ollama.uid)
    assert opts["gid"] == str(ollama.gid)
    assert {"nosuid", "nodev", "noexec"} <= set(opts)


def test_ram_disk_is_mounted_as_planned(host: Any, ram_path: str, planned_size: int) -> None:
    mount = live_mount(host, ram_path)
    assert mount is not None, f"nothing is mounted at {ram_path}"
    assert mount["fstype"] == "tmpfs"
    assert int(mount["size"]) == planned_size
    options = set(mount["options"].split(","))
    ollama = host.user("ollama")
    assert {
        "nosuid",
        "nodev",
        "noexec",
        "mode=755",
        f"uid={ollama.uid}",
        f"gid={ollama.gid}",
    } <= options


def test_ram_disk_has_huge_pages_where_the_kernel_has_them(
    host: Any, ram_path: str, hostvars: dict[str, Any]
) -> None:
    if hostvars.get("ollama_ramdisk_huge", "auto") != "auto":
        pytest.skip("the inventory sets ollama_ramdisk_huge")
    thp = host.file(str(THP_SHMEM))
    wanted = huge_setting("auto", thp.content_string if thp.exists else "")
    options = set(live_mount(host, ram_path)["options"].split(","))
    assert ("huge=within_size" in options) == (wanted == "within_size"), options


def test_sysctl_values_are_written_and_live(host: Any, hostvars: dict[str, Any]) -> None:
    wanted = {**DEFAULT_SYSCTL, **hostvars.get("ollama_sysctl_settings", {})}
    content = host.file(SYSCTL_FILE).content_string
    for key, value in wanted.items():
        if value is None:
            continue
        assert re.search(rf"^\s*{re.escape(key)}\s*=\s*{value}\s*$", content, re.M), (
            f"{key} not in {SYSCTL_FILE}"
        )
        live = host.file(f"/proc/sys/{key.replace('.', '/')}").content_string.split()
        assert live == str(value).split(), f"{key} is {live} in the running kernel, not {value}"


def test_dropin_points_ollama_at_the_ram_disk(host: Any, ram_path: str) -> None:
    dropin = host.file(DROPIN)
    assert dropin.is_file
    assert dropin.user == "root"
    content = dropin.content_string
    assert re.search(rf"^RequiresMountsFor=.*(?<![^\s=]){re.escape(ram_path)}(?!\S)", content, re.M)
    assert re.search(
        rf"^ExecStartPre=.*{re.escape(CLI)} populate --config {re.escape(CONFIG)}\s*$",
        content,
        re.M,
    )
    assert re.search(
        rf'^Environment="?OLLAMA_MODELS={re.escape(ram_path)}/models"?\s*$', content, re.M
    )


def test_systemd_reads_the_dropin(host: Any, ram_path: str) -> None:
    show = host.run(
        "systemctl show ollama.service --property=RequiresMountsFor,DropInPaths,NeedDaemonReload"
    )
    assert show.rc == 0, show.stderr
    props = dict(line.split("=", 1) for line in show.stdout.splitlines())
    assert DROPIN in props["DropInPaths"].split()
    assert ram_path in props["RequiresMountsFor"].split()
    assert props["NeedDaemonReload"] == "no"


def test_service_runs_on_the_ram_disk_with_its_residency_settings(
    host: Any, hostvars: dict[str, Any], ram_path: str
) -> None:
    assert host.service("ollama.service").is_running
    assert host.service("ollama.service").is_enabled
    env = service_env(host)
    assert env["OLLAMA_MODELS"] == f"{ram_path}/models"
    wanted = {**DEFAULT_ENVIRONMENT, **hostvars.get("ollama_service_environment", {})}
    for key, value in wanted.items():
        if value is None:
            continue
        expected = ("1" if value else "0") if isinstance(value, bool) else str(value)
        assert env.get(key) == expected, (
            f"{key}={env.get(key)!r} in the running service, not {expected!r}"
        )


def test_ram_disk_holds_every_hot_blob_byte_for_byte(
    host: Any, ram: Store, disk: Store, hot: list[Name], cold: list[Name]
) -> None:
    assert_ram_disk_serves(host, ram, disk, hot, cold)


def test_ram_disk_holds_nothing_ollama_would_prune(
    ram: Store, hot: list[Name], cold: list[Name]
) -> None:
    assert_no_stray_blobs(ram)
    expected = {name.manifest for name in hot + cold}
    assert set(ram.manifests) == expected, "manifests in the RAM disk differ from the model set"


def test_api_lists_exactly_the_hot_and_cold_models(
    host: Any, hot: list[Name], cold: list[Name]
) -> None:
    assert listed_models(host) == {name.display for name in hot + cold}


def test_preloaded_models_are_loaded(host: Any, hostvars: dict[str, Any]) -> None:
    preload = names(hostvars.get("ollama_service_preload", []))
    if not preload:
        pytest.skip("no ollama_service_preload on this host")
    loaded = {model["name"] for model in api(host, "/api/ps")["models"]}
    assert {name.display for name in preload} <= loaded


def test_ollama_list_shows_exactly_the_hot_and_cold_models(
    host: Any, hot: list[Name], cold: list[Name]
) -> None:
    assert cli_listed_models(host) == {name.display for name in hot + cold}


def test_every_hot_model_answers_with_its_weights_mapped_from_the_ram_disk(
    host: Any, ram: Store, hot: list[Name]
) -> None:
    for name in hot:
        assert_loads_from(host, ram, name, ram.root)


def test_every_cold_model_answers_with_its_weights_mapped_from_the_disk_store(
    host: Any, ram: Store, disk: Store, hot: list[Name], cold: list[Name]
) -> None:
    hot_blobs = {model_blob(ram, name) for name in hot}
    cold_only = [name for name in cold if model_blob(ram, name) not in hot_blobs]
    if not cold_only:
        pytest.skip("no cold model with weights of its own on this host")
    for name in cold_only:
        assert_loads_from(host, ram, name, disk.root)


def test_preloaded_models_expire_as_the_keep_alive_says(
    host: Any, hostvars: dict[str, Any]
) -> None:
    preload = names(hostvars.get("ollama_service_preload", []))
    keep_alive = str(hostvars.get("ollama_service_environment", {}).get("OLLAMA_KEEP_ALIVE"))
    if not preload or keep_alive != "-1":
        pytest.skip("no preload kept forever on this host")
    loaded = {model["name"]: model for model in api(host, "/api/ps")["models"]}
    for name in preload:
        expires = loaded[name.display]["expires_at"]
        # -1 keeps it loaded for ever: Ollama reports a time centuries ahead.
        assert int(expires[:4]) > 2100, f"{name.display} expires at {expires}"


def test_ollama_started_on_a_sound_store(host: Any) -> None:
    """Ollama's own start-up read every manifest (else it logs that it skips the
    prune) and removed no blob."""
    log = journal(host)
    assert "corrupt manifests detected" not in log
    assert "total unused blobs removed: 0" in log, log[-3000:]


def test_the_boot_has_no_ordering_cycle(host: Any) -> None:
    # systemd breaks a cycle at boot by dropping a start job, perhaps Ollama's.
    check = host.run("systemd-analyze verify default.target ollama.service")
    assert "ordering cycle" not in check.stdout + check.stderr, check.stdout + check.stderr
