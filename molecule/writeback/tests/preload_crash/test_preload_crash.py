"""After `kill -9` of the server, Restart=always starts it and the preload unit reloads."""

from __future__ import annotations

from typing import Any

from conftest import FIXTURE_STATE, assert_preloaded_since, unit_property, wait_for


def test_the_server_was_restarted_by_systemd(host: Any) -> None:
    _, killed = host.file(f"{FIXTURE_STATE}/crash.at").content_string.split()
    pid = wait_for(
        "a new main process of ollama.service",
        lambda: (p := unit_property(host, "ollama.service", "MainPID")) not in ("0", killed) and p,
        60,
    )
    assert pid != killed
    assert int(unit_property(host, "ollama.service", "NRestarts")) >= 1


def test_the_preload_models_are_loaded_again(host: Any, hostvars: dict[str, Any]) -> None:
    crashed_at = float(host.file(f"{FIXTURE_STATE}/crash.at").content_string.split()[0])
    assert_preloaded_since(host, hostvars, crashed_at, 120)
