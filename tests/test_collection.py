"""The collection `make collection` builds, installed and used from outside this
repository: what the tarball holds, ansible-doc of each module, and a playbook
of another project running a module and a filter of the installed collection.

The Molecule scenario `collection` runs the roles of the installed collection
against a systemd instance with the real Ollama; `make collection-sanity` (a
job of `make test`) runs ansible-test sanity on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from module_harness import REPO
from ollama_ramdisk import __version__
from storegen import SyntheticStore

NAMESPACE, NAME = "ollama_fleet", "ollama_ramdisk"
FQ = f"{NAMESPACE}.{NAME}"
BIN = REPO / ".venv" / "bin"
MODULES = sorted(p.stem.removeprefix("ollama_ramdisk_") for p in (REPO / "library").glob("*.py"))
BOUND = 300


def _tracked(*paths: str) -> list[str]:
    """Files git tracks under these paths: what the repository ships, no caches."""
    listed = subprocess.run(
        ["git", "ls-files", "--", *paths], cwd=REPO, capture_output=True, text=True, check=True
    )
    return listed.stdout.split()


def _in_collection(core_path: str) -> str:
    """Where a file of module_utils/ lies in the collection."""
    return f"plugins/{core_path}"


def _outside_env(project: Path) -> dict[str, str]:
    """An environment with nothing of this checkout in it: no ANSIBLE_* variable
    (Molecule and the tests set some), the outside project's ansible.cfg."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    return {**env, "ANSIBLE_CONFIG": str(project / "ansible.cfg"), "NO_COLOR": "1"}


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("collection")
    built = subprocess.run(
        [str(BIN / "python"), str(REPO / "scripts/build-collection.py"),
         "--out", str(base / "dist"), "--work", str(base / "work")],
        capture_output=True, text=True, timeout=BOUND, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.split()[-1])


@pytest.fixture(scope="module")
def project(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another project, in a directory of its own: its ansible.cfg names only its
    own collections path, where the tarball is installed."""
    root = tmp_path_factory.mktemp("operator-project")
    (root / "ansible.cfg").write_text(
        "[defaults]\ncollections_path = ./collections\ninventory = ./hosts.yml\n"
        "interpreter_python = auto_silent\n"
    )
    (root / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {BIN / 'python'}\n"
    )
    installed = subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "install", "--no-deps",
         "-p", str(root / "collections"), str(tarball)],
        cwd=root, env=_outside_env(root), capture_output=True, text=True, timeout=BOUND,
        check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return root


def test_the_tarball_holds_what_the_collection_needs_and_nothing_else(tarball: Path) -> None:
    with tarfile.open(tarball) as packed:
        files = {member.name for member in packed.getmembers() if member.isfile()}

    wanted = (
        {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.md", "meta/runtime.yml"}
        | {f"plugins/modules/{name}.py" for name in MODULES}
        | {_in_collection(path) for path in _tracked("module_utils/ollama_ramdisk")}
        | {"plugins/filter/ollama_ramdisk.py"}
        | set(_tracked("roles", "playbooks"))
    )
    assert files == wanted
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]


def test_the_collection_ships_the_checkouts_core_unchanged(tarball: Path) -> None:
    # The role installs this package on every host: one core, either way.
    with tarfile.open(tarball) as packed:
        for path in _tracked("module_utils/ollama_ramdisk"):
            member = packed.extractfile(_in_collection(path))
            assert member is not None
            assert member.read() == (REPO / path).read_bytes(), path


def test_manifest_names_the_collection_its_version_and_dependencies(tarball: Path) -> None:
    with tarfile.open(tarball) as packed:
        member = packed.extractfile("MANIFEST.json")
        assert member is not None
        info = json.load(member)["collection_info"]

    assert (info["namespace"], info["name"], info["version"]) == (NAMESPACE, NAME, __version__)
    assert set(info["dependencies"]) == {"ansible.posix"}
    assert info["license"] == ["Apache-2.0"]


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_shows_each_module_from_the_installed_collection(
    project: Path, module: str
) -> None:
    shown = subprocess.run(
        [str(BIN / "ansible-doc"), "--json", f"{FQ}.{module}"], cwd=project,
        env=_outside_env(project), capture_output=True, text=True, timeout=BOUND, check=False,
    )  # fmt: skip

    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)[f"{FQ}.{module}"]["doc"]
    assert doc["module"] == module
    assert doc["collection"] == FQ
    assert Path(doc["filename"]).is_relative_to(project / "collections")
    assert doc["short_description"]
    # The examples call the module by its fully qualified name.
    examples = yaml.safe_load(json.loads(shown.stdout)[f"{FQ}.{module}"]["examples"])
    assert any(f"{FQ}.{module}" in task for task in examples)


def test_a_playbook_of_another_project_runs_a_module_and_a_filter_of_the_collection(
    project: Path, fleet: SyntheticStore, cli
) -> None:
    playbook = project / "plan.yml"
    playbook.write_text(
        f"""---
- name: Plan a RAM disk with the installed collection
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Plan
      {FQ}.plan:
        source: {fleet.root}
        models: [llama3.2:3b, llama3.2:1b]
        mem_total: 64g
      register: planned
    - name: Keep the plan and a size read by the collection's filter
      ansible.builtin.copy:
        content: "{{{{ {{'plan': planned.plan, 'size': size}} | to_json }}}}"
        dest: {project}/planned.json
        mode: "0644"
      vars:
        size: "{{{{ '48g' | {FQ}.ollama_ramdisk_size_bytes }}}}"
"""
    )
    ran = subprocess.run(
        [str(BIN / "ansible-playbook"), str(playbook)], cwd=project,
        env=_outside_env(project), capture_output=True, text=True, timeout=BOUND, check=False,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads((project / "planned.json").read_text())
    expected = cli("plan", "--json", "--source", fleet.root, "--mem-total", "64g",
                   "llama3.2:3b", "llama3.2:1b").json  # fmt: skip
    assert result["size"] == 48 << 30
    for key in ("models", "blob_count", "bytes", "tmpfs_bytes", "size_bytes", "size", "fits"):
        assert result["plan"][key] == expected[key], key


def test_the_readmes_playbook_is_the_one_the_molecule_scenario_runs() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Use from your own playbooks") :]
    shown = yaml.safe_load(section.split("```yaml\n")[2].split("```")[0])
    converge = yaml.safe_load((REPO / "molecule/collection/converge.yml").read_text())
    (written,) = [task for task in converge[0]["tasks"] if task.get("ansible.builtin.copy", {})
                  .get("dest", "").endswith("/site.yml")]  # fmt: skip
    assert shown == yaml.safe_load(written["ansible.builtin.copy"]["content"])
