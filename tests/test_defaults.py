"""Each default is written once, in the core's defaults.py: the command's help,
the modules' argument specs, the roles' defaults and the READMEs' variable
tables say the same value."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from module_harness import REPO, load_module
from ollama_ramdisk import defaults

ROLES = REPO / "roles"
# role variable -> the core default it passes on
ROLE_DEFAULTS = {
    ("ollama_ramdisk", "ollama_ramdisk_headroom"): defaults.HEADROOM,
    ("ollama_ramdisk", "ollama_ramdisk_lock_timeout"): defaults.LOCK_TIMEOUT,
    ("ollama_ramdisk", "ollama_ramdisk_writeback_reserve"): defaults.WRITEBACK_RESERVE,
    ("ollama_ramdisk", "ollama_ramdisk_metrics_max_models"): defaults.METRICS_MAX_MODELS,
    ("ollama_service", "ollama_service_preload_retries"): defaults.PRELOAD_RETRIES,
    ("ollama_service", "ollama_service_preload_timeout"): defaults.PRELOAD_LOAD_TIMEOUT,
}
# (module, option) -> the core default
MODULE_DEFAULTS = {
    ("ollama_ramdisk_plan", "headroom"): defaults.HEADROOM,
    ("ollama_ramdisk_populate", "lock_timeout"): defaults.LOCK_TIMEOUT,
    ("ollama_ramdisk_verify", "jobs"): defaults.VERIFY_JOBS,
    ("ollama_ramdisk_writeback", "reserve"): defaults.WRITEBACK_RESERVE,
    ("ollama_ramdisk_writeback", "lock_timeout"): defaults.LOCK_TIMEOUT,
    ("ollama_ramdisk_pull", "reserve"): defaults.WRITEBACK_RESERVE,
}
# (command, option) -> the core default its help names
HELP_DEFAULTS = {
    ("plan", "--headroom"): defaults.HEADROOM,
    ("populate", "--lock-timeout"): defaults.LOCK_TIMEOUT,
    ("populate", "--jobs"): defaults.MAX_JOBS,
    ("writeback", "--reserve"): defaults.WRITEBACK_RESERVE,
    ("writeback", "--lock-timeout"): defaults.LOCK_TIMEOUT,
    ("pull", "--reserve"): defaults.WRITEBACK_RESERVE,
    ("preload", "--wait"): defaults.PRELOAD_WAIT,
    ("preload", "--retries"): defaults.PRELOAD_RETRIES,
    ("preload", "--load-timeout"): defaults.PRELOAD_LOAD_TIMEOUT,
    ("preload", "--host"): defaults.OLLAMA_HOST,
    ("status", "--metrics-max-models"): defaults.METRICS_MAX_MODELS,
}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _readme_default(role: str, variable: str) -> str:
    for line in (ROLES / role / "README.md").read_text().splitlines():
        if line.startswith(f"| `{variable}` |"):
            return line.split("|")[2].strip().strip("`")
    raise AssertionError(f"{role}/README.md has no row for {variable}")


def _same(value: object, expected: object) -> bool:
    if isinstance(expected, float) and isinstance(value, (int, float, str)):
        return float(value) == expected
    return str(value) == str(expected)


@pytest.mark.parametrize(("where", "expected"), ROLE_DEFAULTS.items(), ids=str)
def test_role_defaults_spec_and_readme_say_the_core_default(
    where: tuple[str, str], expected: object
) -> None:
    role, variable = where
    default = _yaml(ROLES / role / "defaults" / "main.yml")[variable]
    spec = _yaml(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]
    documented = spec["options"][variable]["default"]

    assert _same(default, expected), f"{variable}: {default!r}, the core says {expected!r}"
    assert _same(documented, expected), f"{variable} in argument_specs: {documented!r}"
    assert _same(_readme_default(role, variable), expected), f"{variable} in the README"


@pytest.mark.parametrize(("where", "expected"), MODULE_DEFAULTS.items(), ids=str)
def test_module_specs_and_documentation_say_the_core_default(
    where: tuple[str, str], expected: object
) -> None:
    name, option = where
    module = load_module(name)
    documented = yaml.safe_load(module.DOCUMENTATION)["options"][option]["default"]

    assert module.ARGUMENT_SPEC[option]["default"] == expected
    assert _same(documented, expected)


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    texts = {}
    for command in {command for command, _ in HELP_DEFAULTS}:
        done = subprocess.run(
            [sys.executable, "-m", "ollama_ramdisk.cli", command, "--help"],
            capture_output=True, text=True, check=True,
            env={"PYTHONPATH": str(REPO / "module_utils"), "COLUMNS": "200"},
        )  # fmt: skip
        texts[command] = done.stdout
    return texts


@pytest.mark.parametrize(("where", "expected"), HELP_DEFAULTS.items(), ids=str)
def test_the_command_help_names_the_core_default(
    helps: dict[str, str], where: tuple[str, str], expected: object
) -> None:
    command, option = where
    # The option's entry: its line and the indented lines of help below it.
    entry = re.search(rf"^  {re.escape(option)}\b.*?(?=^  -|\Z)", helps[command], re.M | re.S)
    assert entry is not None, f"{command} --help has no {option}"
    text = " ".join(entry.group(0).split())
    shown = f"{expected:g}" if isinstance(expected, float) else str(expected)

    assert re.search(rf"(default|most) {re.escape(shown)}\b", text), text
