"""One SIZE grammar: the command line and the roles accept and refuse the same
values (the roles check them with filters over the core's parser)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from module_harness import REPO

# value -> whether it is a SIZE (bytes, or a number with k, m, g or t, powers of 1024)
VALUES = {
    "1024": True,
    "0": True,
    "64g": True,
    "64G": True,
    "64 g": True,
    "64GiB": True,
    "64gb": True,
    "1.5t": True,
    "0.5k": True,
    " 96m ": True,
    "64x": False,
    "g": False,
    "-1g": False,
    "1e3": False,
    "1,5g": False,
    "64 gg": False,
    "64ki": False,
    "1.g": False,
    "99999999999999999999999t": False,
}

PLAYBOOK = """\
- name: Check SIZE values the way the roles do
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The ollama_ramdisk role's check
      ansible.builtin.include_role:
        name: ollama_ramdisk
        tasks_from: assert.yml
        apply:
          ignore_errors: true
      vars:
        ollama_ramdisk_models: [llama3.2:1b]
        ollama_ramdisk_reserve: "{{ size_value }}"
      loop: "{{ size_values }}"
      loop_control:
        loop_var: size_value
    - name: The ollama_service role's check
      ansible.builtin.include_role:
        name: ollama_service
        tasks_from: assert_timeout.yml
        apply:
          ignore_errors: true
      vars:
        ollama_service_min_copy_rate: "{{ size_value }}"
        ollama_service_timeout_start_sec: "3600"
      loop: "{{ size_values }}"
      loop_control:
        loop_var: size_value
"""


def _cli_accepts(value: str) -> bool:
    # --help after the option: argparse converts the value first, then stops.
    done = subprocess.run(
        [sys.executable, "-m", "ollama_ramdisk.cli", "plan", f"--reserve={value}", "--help"],
        capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO / "module_utils")},
    )  # fmt: skip
    assert done.returncode in (0, 2), done.stderr
    return done.returncode == 0


@pytest.fixture(scope="module")
def role_verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bool]]:
    """task -> value -> accepted, from one ansible-playbook run of the roles' checks."""
    root: Path = tmp_path_factory.mktemp("size-grammar")
    (root / "play.yml").write_text(PLAYBOOK)
    (root / "vars.json").write_text(json.dumps({"size_values": list(VALUES)}))
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "localhost,",
         str(root / "play.yml"), "-e", f"@{root / 'vars.json'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
             "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
             "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_DEPRECATION_WARNINGS": "false"},
    )  # fmt: skip
    output = json.loads(done.stdout[done.stdout.index("{") :])
    # Each included check runs once per value, in the order of VALUES.
    runs: dict[str, list[bool]] = {"ollama_ramdisk_reserve": [], "ollama_service_min_copy_rate": []}
    for play in output["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"].rpartition(" : ")[2]
            result = task["hosts"].get("localhost", {})
            if name == "Check the SIZE values":
                # A loop over the three SIZE variables: the reserve's item.
                reserve = next(
                    item for item in result["results"]
                    if item["item"]["key"] == "ollama_ramdisk_reserve"
                )  # fmt: skip
                runs["ollama_ramdisk_reserve"].append(not reserve.get("failed", False))
            elif name == "Check ollama_service_min_copy_rate":
                runs["ollama_service_min_copy_rate"].append(not result.get("failed", False))
    for variable, accepted in runs.items():
        assert len(accepted) == len(VALUES), f"{variable}: {len(accepted)} checks ran"
    verdicts = {variable: dict(zip(VALUES, accepted)) for variable, accepted in runs.items()}
    return verdicts


@pytest.mark.parametrize("value", VALUES)
def test_the_command_line_reads_the_size_list_as_expected(value: str) -> None:
    assert _cli_accepts(value) is VALUES[value]


@pytest.mark.parametrize("variable", ["ollama_ramdisk_reserve", "ollama_service_min_copy_rate"])
def test_the_roles_accept_and_refuse_what_the_command_line_does(
    role_verdicts: dict[str, dict[str, bool]], variable: str
) -> None:
    expected = {value: accepted for value, accepted in VALUES.items()}
    if variable == "ollama_service_min_copy_rate":
        # A copy rate of 0 bytes per second is no rate: the role also wants more than 0.
        expected["0"] = False

    assert role_verdicts[variable] == expected
