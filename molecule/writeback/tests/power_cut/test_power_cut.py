"""A power cut 60 s after `ollama create`: after the next boot the model is listed and answers."""

from __future__ import annotations

from typing import Any

from conftest import DISK_STORE, Name, generate, listed_models, state_time, unit_property

CUT = Name.parse("cut:one")


def test_the_instance_really_booted_again(host: Any) -> None:
    made_at = state_time(host, "power-cut.at")
    started = int(unit_property(host, "ollama.service", "ExecMainStartTimestampMonotonic") or 0)
    uptime = float(host.file("/proc/uptime").content_string.split()[0])
    now = float(host.run("date +%s").stdout)
    # The server started in this boot, after the cut (60 s after the model was made).
    assert now - uptime + started / 1e6 > made_at + 60


def test_the_model_made_before_the_cut_is_on_disk_listed_and_answers(host: Any) -> None:
    assert host.file(f"{DISK_STORE}/{CUT.manifest}").is_file
    assert CUT.display in listed_models(host)
    assert generate(host, CUT.display)["done"]
