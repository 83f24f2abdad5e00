"""With ollama_ramdisk_verify_repair on, the timer's next check copies the
corrupted blob again from the disk store, says so, and the metrics count it."""

from __future__ import annotations

from typing import Any

from conftest import sample, textfile_samples, unit_journal, wait_for

VERIFY_UNIT = "ollama-ramdisk-verify.service"


def test_the_check_repaired_the_blob_and_the_metrics_count_it(host: Any) -> None:
    corrupted = host.file("/var/lib/ollama-fixture/corrupted").content_string.strip()

    def repaired() -> list | None:
        found = textfile_samples(host)
        count = sample(found, "ollama_ramdisk_last_verify_repaired_blobs") or 0
        return found if count >= 1 else None

    found = wait_for("a repairing check in the metrics", repaired, 120)

    assert sample(found, "ollama_ramdisk_last_verify_corrupt_blobs") >= 1
    digest = host.run("sha256sum /mnt/ollama/models/blobs/%s", corrupted).stdout.split()[0]
    assert digest == corrupted.split("-", 1)[1]
    owner = host.file(f"/mnt/ollama/models/blobs/{corrupted}").user
    assert owner == "ollama"
    assert any(
        "repaired" in line.lower() and corrupted in line
        for line in unit_journal(host, VERIFY_UNIT).splitlines()
    )
