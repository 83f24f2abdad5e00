"""A preload model that does not exist is named in the preload journal; the server keeps running."""

from __future__ import annotations

from typing import Any

from conftest import Name, journal, loaded_models, unit_property, wait_for

UNIT = "ollama-ramdisk-preload.service"


def _finished_after_this_start(host: Any) -> bool:
    server = int(unit_property(host, "ollama.service", "ExecMainStartTimestampMonotonic"))
    ran = int(unit_property(host, UNIT, "InactiveExitTimestampMonotonic") or 0)
    return ran >= server and unit_property(host, UNIT, "ActiveState") in ("inactive", "failed")


def test_the_missing_model_is_named_and_the_unit_fails(host: Any) -> None:
    wait_for(
        "the preload unit's run after the restart", lambda: _finished_after_this_start(host), 180
    )
    log = journal(host, UNIT)
    assert "could not preload nosuch:model" in log, log
    assert "not found" in log
    assert unit_property(host, UNIT, "Result") == "exit-code"


def test_the_server_keeps_running_with_the_other_models_loaded(
    host: Any, hostvars: dict[str, Any]
) -> None:
    assert host.service("ollama.service").is_running
    # Still the process the preload ran against: the failure restarted nothing.
    server = int(unit_property(host, "ollama.service", "ExecMainStartTimestampMonotonic"))
    assert server <= int(unit_property(host, UNIT, "InactiveExitTimestampMonotonic"))
    wanted = {Name.parse(model).display for model in hostvars["ollama_service_preload"]}
    assert wanted <= set(loaded_models(host))
