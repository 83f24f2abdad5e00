"""The modules' DOCUMENTATION says what their argument specs do, and ansible-doc renders it."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest
import yaml
from module_harness import REPO, load_module

# Every module of library/: a new one is documented and checked from the start.
MODULES = sorted(path.stem for path in (REPO / "library").glob("ollama_ramdisk_*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_match_the_argument_spec(name: str) -> None:
    module = load_module(name)
    documented: dict[str, Any] = yaml.safe_load(module.DOCUMENTATION)["options"]
    spec: dict[str, Any] = module.ARGUMENT_SPEC

    assert sorted(documented) == sorted(spec)
    for option, doc in documented.items():
        assert doc["type"] == spec[option]["type"], option
        assert doc.get("required", False) == spec[option].get("required", False), option
        assert doc.get("default") == spec[option].get("default"), option
        assert doc.get("elements") == spec[option].get("elements"), option
        assert doc["description"], option


@pytest.mark.parametrize("name", MODULES)
def test_examples_use_only_documented_options(name: str) -> None:
    module = load_module(name)
    documented = set(yaml.safe_load(module.DOCUMENTATION)["options"])
    examples = yaml.safe_load(module.EXAMPLES)

    used = [task[name] for task in examples if name in task]
    assert used, f"{name} has no example"
    for arguments in used:
        assert set(arguments) <= documented


def test_ansible_doc_renders_every_module() -> None:
    completed = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-doc"), "-M", "library", "--json", *MODULES],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    rendered = json.loads(completed.stdout)
    assert sorted(rendered) == MODULES
    for name in MODULES:
        assert rendered[name]["doc"]["short_description"]
        assert rendered[name]["return"], name
        assert rendered[name]["examples"].strip(), name
