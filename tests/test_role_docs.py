"""Each role's variables are written once: defaults, argument specs and README agree."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = sorted(path.name for path in (Path(__file__).resolve().parents[1] / "roles").iterdir())
ROOT = Path(__file__).resolve().parents[1] / "roles"
# A row of a README's variable table: | `name` (, `name`...) | ...
ROW = re.compile(r"^\| ((?:`[a-z0-9_]+`(?:, )?)+) \|")


def _spec(role: str) -> dict[str, Any]:
    specs = yaml.safe_load((ROOT / role / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = specs["argument_specs"]["main"]["options"]
    return options


def _defaults(role: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((ROOT / role / "defaults" / "main.yml").read_text())
    return values


def _readme_variables(role: str) -> list[str]:
    names: list[str] = []
    for line in (ROOT / role / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            names += re.findall(r"`([a-z0-9_]+)`", match.group(1))
    return names


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_specified_with_the_same_value(role: str) -> None:
    spec = _spec(role)
    for name, value in _defaults(role).items():
        assert name in spec, f"{role}: {name} has a default but no argument spec"
        assert spec[name].get("default") == value, f"{role}: {name} defaults differ"


@pytest.mark.parametrize("role", ROLES)
def test_every_option_has_a_default_and_a_readme_row(role: str) -> None:
    defaults = _defaults(role)
    documented = [name for name in _readme_variables(role) if name.startswith(role + "_")]
    for name in _spec(role):
        assert name in defaults, f"{role}: {name} is specified but has no default"
        assert name in documented, f"{role}: {name} is missing from the README's variable table"
