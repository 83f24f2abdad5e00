"""After `kill -9` of the server, Restart=always starts it and the preload unit reloads."""

from __future__ import annotations

from typing import Any

from conftest import FIXTURE_STATE, Name, instance_time, loaded_models, unit_property, wait_for


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
    wanted = {Name.parse(model).display for model in hostvars["ollama_service_preload"]}
    crashed_at = float(host.file(f"{FIXTURE_STATE}/crash.at").content_string.split()[0])

    def loaded() -> dict[str, Any] | None:
        models = loaded_models(host) if host.service("ollama.service").is_running else {}
        return models if wanted <= set(models) else None

    models = wait_for(
        "the preload models in /api/ps", loaded, crashed_at + 120 - instance_time(host)
    )
    assert all(int(models[name]["expires_at"][:4]) > 2100 for name in wanted)
