"""Debian's node_exporter serves the role's metrics with the values the host
really has, promtool accepts the file, and the periodic check (repair off)
finds the corrupted blob, names it in the journal and shows it in the metrics."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    TEXTFILE,
    Name,
    Store,
    live_mount,
    loaded_models,
    sample,
    scraped_samples,
    state_time,
    textfile_samples,
    unit_journal,
    unit_property,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[4]
VERIFY_UNIT = "ollama-ramdisk-verify.service"


@pytest.fixture(scope="module")
def corrupted(host: Any) -> str:
    return host.file("/var/lib/ollama-fixture/corrupted").content_string.strip()


@pytest.fixture(scope="module")
def checked(host: Any) -> list:
    """The metrics once the timer's check has run on the corrupted RAM disk."""

    def reported() -> list | None:
        found = textfile_samples(host)
        done = sample(found, "ollama_ramdisk_last_run_timestamp_seconds", command="verify")
        return found if done and done > state_time(host, "corrupted-at") else None

    return wait_for("a check after the corruption in the metrics", reported, 120)


def test_the_timers_run(host: Any) -> None:
    for timer in ("ollama-ramdisk-metrics.timer", "ollama-ramdisk-verify.timer"):
        assert unit_property(host, timer, "ActiveState") == "active", timer
    assert unit_property(host, VERIFY_UNIT, "Nice") == "19"
    assert unit_property(host, VERIFY_UNIT, "IOSchedulingClass") == "3"  # idle
    assert unit_property(host, VERIFY_UNIT, "CPUQuotaPerSecUSec") == "500ms"


def test_the_check_found_the_corrupted_blob_and_the_metrics_show_it(
    host: Any, checked: list, corrupted: str
) -> None:
    assert sample(checked, "ollama_ramdisk_last_run_success", command="verify") == 0
    assert sample(checked, "ollama_ramdisk_last_verify_corrupt_blobs") >= 1
    assert sample(checked, "ollama_ramdisk_last_verify_repaired_blobs") == 0
    assert sample(checked, "ollama_ramdisk_last_verify_checked_blobs") > 1
    named = [line for line in unit_journal(host, VERIFY_UNIT).splitlines() if corrupted in line]
    assert any("corrupt" in line.lower() for line in named), named
    # Repair off: the blob is still bad.
    assert (
        host.run("sha256sum /mnt/ollama/models/blobs/%s", corrupted).stdout.split()[0]
        != (corrupted.split("-", 1)[1])
    )


def test_node_exporter_serves_the_series_with_the_hosts_values(
    host: Any, checked: list, ram: Store, hot: list[Name]
) -> None:
    scraped = scraped_samples(host)
    assert sample(scraped, "node_textfile_scrape_error") == 0
    mount = live_mount(host, "/mnt/ollama")
    assert sample(scraped, "ollama_ramdisk_size_bytes", fstype="tmpfs") == mount["size"]
    assert sample(scraped, "ollama_ramdisk_models") == len(ram.manifests)
    for name in hot:
        resident = sample(scraped, "ollama_ramdisk_model_resident", model=name.qualified,
                          residency="ram")  # fmt: skip
        assert resident == 1, name
    assert sample(scraped, "ollama_ramdisk_ollama_up") == 1
    loaded = loaded_models(host)
    assert sample(scraped, "ollama_ramdisk_ollama_loaded_models") == len(loaded)
    for display, entry in loaded.items():
        qualified = Name.parse(display).qualified
        size = sample(scraped, "ollama_ramdisk_ollama_model_size_bytes", model=qualified)
        assert size == entry["size"], display
    # The refill at the last boot, and the write-back timer's runs.
    assert sample(scraped, "ollama_ramdisk_last_run_success", command="populate") == 1
    assert sample(scraped, "ollama_ramdisk_last_refill_fallback_blobs") == 0
    assert sample(scraped, "ollama_ramdisk_last_run_timestamp_seconds", command="writeback")
    assert sample(scraped, "ollama_ramdisk_collect_duration_seconds") is not None


def test_promtool_accepts_the_textfile(host: Any, checked: list) -> None:
    promtool = subprocess.run(
        [str(ROOT / "scripts" / "ensure-host.sh"), "promtool"],
        capture_output=True, text=True, check=True,
    ).stdout.split()[-1]  # fmt: skip
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=host.file(TEXTFILE).content_string,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# systemd-analyze security's "OK" ends at 4.9 (then MEDIUM, EXPOSED, UNSAFE).
EXPOSURE_OK = 4.9
SERVICES = (
    "ollama-ramdisk-writeback.service",
    VERIFY_UNIT,
    "ollama-ramdisk-metrics.service",
    "ollama-ramdisk-preload.service",
)


def test_every_unit_the_roles_install_rates_ok_or_better(host: Any, record_property: Any) -> None:
    scores = {}
    for unit in SERVICES:
        rated = host.run("systemd-analyze security --no-pager %s", unit)
        found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", rated.stdout)
        assert found, rated.stdout + rated.stderr
        scores[unit] = float(found.group(1))
    record_property("exposure", scores)
    print(f"systemd-analyze security: {scores}")

    assert all(score <= EXPOSURE_OK for score in scores.values()), scores
    for unit in ("ollama-ramdisk-writeback.service", VERIFY_UNIT):
        assert unit_property(host, unit, "User") == "ollama", unit


def test_a_forged_ok_report_does_not_hide_the_failed_check(host: Any, checked: list) -> None:
    # The check failed (a corrupt blob, repair off); the ollama user, who owns
    # the state directory, writes a report that says it succeeded.
    forged = json.dumps({
        "command": "verify", "finished_at": time.time() + 3600, "seconds": 1.0,
        "exit_code": 0, "ok": True, "error": None,
        "counts": {"checked_blobs": 9, "corrupt_blobs": 0, "missing_blobs": 0},
    })  # fmt: skip
    stop_the_check = host.run("systemctl stop ollama-ramdisk-verify.timer")
    assert stop_the_check.rc == 0, stop_the_check.stderr
    wait_for(
        "the running check to end",
        lambda: unit_property(host, VERIFY_UNIT, "ActiveState") in ("inactive", "failed") or None,
        300,
    )
    assert unit_property(host, VERIFY_UNIT, "Result") == "exit-code"
    try:
        written = host.run(
            "printf %%s %s | runuser -u ollama -- sh -c"
            " 'cat > /var/lib/ollama-ramdisk/last-verify.json'",
            forged,
        )
        assert written.rc == 0, written.stderr
        metrics = host.run("systemctl start ollama-ramdisk-metrics.service")
        assert metrics.rc == 0, metrics.stderr

        found = textfile_samples(host)
        assert sample(found, "ollama_ramdisk_last_verify_corrupt_blobs") == 0  # the forgery
        assert sample(found, "ollama_ramdisk_last_run_success", command="verify") == 0
    finally:
        host.run("systemctl start ollama-ramdisk-verify.timer")
