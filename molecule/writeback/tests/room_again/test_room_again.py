"""With room again, the next timed write-back writes the refused model."""

from __future__ import annotations

from typing import Any

from conftest import (
    DISK_STORE,
    Name,
    instance_time,
    state_time,
    unit_property,
    wait_for,
    written_back,
)

NOROOM = Name.parse("noroom:one")


def test_the_refused_model_is_written_back_by_the_timer(host: Any) -> None:
    since = state_time(host, "room-again.at")

    def on_disk() -> bool:
        return host.file(f"{DISK_STORE}/{NOROOM.manifest}").is_file

    wait_for("noroom:one in the disk store", on_disk, since + 75 - instance_time(host))
    assert NOROOM in written_back(host)


def test_the_unit_succeeds_again(host: Any) -> None:
    wait_for(
        "a successful write-back",
        lambda: unit_property(host, "ollama-ramdisk-writeback.service", "Result") == "success",
        60,
    )
