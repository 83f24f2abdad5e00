"""Links and a FIFO planted in the RAM disk are never followed; nothing outside is touched."""

from __future__ import annotations

from typing import Any

from conftest import DISK_STORE, FIXTURE_STATE, Name, Store, journal

UNIT = "ollama-ramdisk-writeback.service"
PLANTED = [Name.parse(name) for name in ("planted", "linkedblob", "fifo")]


def test_the_run_ended_and_failed(host: Any) -> None:
    rc = int(host.file(f"{FIXTURE_STATE}/planted.rc").content_string)
    assert rc != 124, "the write-back hung (killed by the 120 s timeout)"
    assert rc != 0
    assert (
        host.run("systemctl show --property=Result --value %s", UNIT).stdout.strip() == "exit-code"
    )


def test_every_planted_model_is_named_as_refused(host: Any) -> None:
    log = journal(host, UNIT)
    for name in ("linkedblob", "fifo"):
        assert f"registry.ollama.ai/library/{name}:latest not written back" in log, log
    for relpath in ("library/planted/latest", "evil"):
        assert f"manifests/registry.ollama.ai/{relpath} not written back" in log, log
        assert "is a symlink, never followed" in log


def test_nothing_planted_reached_the_disk_store(host: Any, disk: Store) -> None:
    secret_hex = host.file(f"{FIXTURE_STATE}/planted.sha256").content_string.split()[0]
    for name in PLANTED:
        assert name.manifest not in disk.manifests
    assert not [
        path for path in disk.manifests if path.startswith("manifests/registry.ollama.ai/evil")
    ]
    assert f"sha256-{secret_hex}" not in disk.blobs
    assert all(entry["sha256"] != secret_hex for entry in disk.blobs.values())
    assert not host.file(f"{DISK_STORE}/manifests/registry.ollama.ai/evil").exists


def test_the_files_outside_are_unchanged(host: Any) -> None:
    check = host.run("sha256sum --check --quiet %s/planted.sha256", FIXTURE_STATE)
    assert check.rc == 0, check.stdout + check.stderr
    secret = host.file("/root/ollama-secret.bin")
    assert (secret.user, secret.mode) == ("root", 0o600)
