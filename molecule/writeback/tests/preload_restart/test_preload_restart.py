"""After `systemctl restart ollama` the preload unit loads its models again, with keep-alive."""

from __future__ import annotations

from typing import Any

from conftest import assert_preloaded_since, state_time


def test_the_preload_models_are_loaded_again(host: Any, hostvars: dict[str, Any]) -> None:
    assert_preloaded_since(host, hostvars, state_time(host, "restart.at"), 120)


def test_the_preload_unit_ran_after_this_start_and_succeeded(
    host: Any, hostvars: dict[str, Any]
) -> None:
    # A oneshot unit that succeeded is unloaded at once (its properties reset):
    # its journal since the restart is what stays.
    restarted_at = int(state_time(host, "restart.at"))
    log = host.run(
        "journalctl --no-pager --output cat --unit ollama-ramdisk-preload.service --since @%s",
        str(restarted_at),
    ).stdout
    for model in hostvars["ollama_service_preload"]:
        assert f"preloaded {model} in" in log, log
    assert "Deactivated successfully" in log, log
