"""The playbooks refuse a host pattern that matches no host, naming the group to use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLAYBOOKS = sorted(path.name for path in (REPO / "playbooks").glob("*.yml"))


def _run(inventory: Path, playbook: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCALHOST_WARNING": "false"}  # fmt: skip
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(inventory), str(playbook),
         *extra],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """Servers in a group of the operator's own naming, not ollama_servers."""
    path = tmp_path / "hosts.yml"
    path.write_text("gpu_boxes:\n  hosts:\n    gpu-01.example:\n    gpu-02.example:\n")
    return path


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_a_pattern_that_matches_no_host_fails_and_says_what_to_use(
    inventory: Path, playbook: str
) -> None:
    run = _run(inventory, REPO / "playbooks" / playbook)

    assert run.returncode == 2, run.stdout + run.stderr
    assert "No host of the inventory matches ollama_servers" in run.stdout
    assert "-e ollama_fleet_hosts=PATTERN" in run.stdout
    assert "in the groups gpu_boxes" in run.stdout
    # Nothing was tried on the servers.
    assert "gpu-01.example" not in run.stdout.split("No host of the inventory")[0]


def test_a_pattern_given_with_ollama_fleet_hosts_passes_the_check(inventory: Path) -> None:
    check = REPO / "playbooks" / "checks" / "fleet-hosts.yml"

    run = _run(inventory, check, "-e", "ollama_fleet_hosts=gpu_boxes")

    assert run.returncode == 0, run.stdout + run.stderr
