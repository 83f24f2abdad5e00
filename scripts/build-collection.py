#!/usr/bin/env python3
"""Build the Ansible collection from this repository as it is laid out.

The repository keeps the layout a checkout runs from (``library/``,
``module_utils/``, ``filter_plugins/``, ``roles/``, ``playbooks/``); a
collection wants ``plugins/modules`` and fully qualified names. This script
is the one place that maps one onto the other:

* ``planned_files`` says where each file of the repository goes in the collection;
* ``rewrite_*`` turn the checkout's short names into the collection's fully
  qualified ones (modules, filters, roles, imports of the core).

``collection/`` holds what only the collection has (``galaxy.yml``,
``meta/runtime.yml``). The tree is assembled under ``--work`` as
``ansible_collections/NAMESPACE/NAME`` (where ``ansible-test`` wants it) and
``ansible-galaxy collection build`` packs it into ``--out``.

Usage: build-collection.py [--out DIR] [--work DIR] [--tree-only]
Prints the tarball's path (or the tree's, with --tree-only) as its last line.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml  # the build runs where Ansible does, and Ansible needs PyYAML

ROOT = Path(__file__).resolve().parents[1]
MODULE_PREFIX = "ollama_ramdisk_"
CORE = "ollama_ramdisk"
ROLES = ("ollama_sysctl", "ollama_ramdisk", "ollama_service")
FILTERS = (
    "ollama_ramdisk_size_problem",
    "ollama_ramdisk_size_bytes",
    "ollama_ramdisk_model_name_problem",
    "ollama_ramdisk_model_key",
    "ollama_ramdisk_huge_setting",
    "ollama_ramdisk_tmpfs_options",
    "ollama_ramdisk_tmpfs_change",
)


def galaxy_field(name: str) -> str:
    """A top-level scalar of collection/galaxy.yml (no YAML parser needed)."""
    text = (ROOT / "collection/galaxy.yml").read_text()
    found = re.search(rf"^{name}:\s*(\S+)\s*$", text, re.MULTILINE)
    if not found:
        sys.exit(f"build-collection: collection/galaxy.yml has no {name}")
    return found.group(1).strip("\"'")


NAMESPACE = galaxy_field("namespace")
NAME = galaxy_field("name")
FQ = f"{NAMESPACE}.{NAME}"


def module_names() -> list[str]:
    return sorted(p.stem[len(MODULE_PREFIX) :] for p in (ROOT / "library").glob("*.py"))


# ------------------------------------------------------------------ rewrites


def rewrite_module(text: str) -> str:
    """A module of library/: its documented name, its references to the other
    modules (seealso, M(), EXAMPLES) and its imports of the core."""
    modules = "|".join(module_names())
    text = re.sub(rf"^module: {MODULE_PREFIX}({modules})$", r"module: \1", text, flags=re.M)
    text = re.sub(rf"\b{MODULE_PREFIX}({modules})\b", rf"{FQ}.\1", text)
    return text.replace(
        f"ansible.module_utils.{CORE}.", f"ansible_collections.{FQ}.plugins.module_utils.{CORE}."
    )


# The checkout's filter plugin puts module_utils/ on sys.path between these lines.
_PATH_BLOCK = re.compile(r"^# -- core on sys\.path: checkout only --\n.*?^# --\n", re.M | re.S)


def rewrite_filter(text: str) -> str:
    """The filter plugin imports the core from the collection, not from sys.path."""
    if not _PATH_BLOCK.search(text):
        raise SystemExit("build-collection: the filter plugin's sys.path block is not marked")
    text = _PATH_BLOCK.sub("", text)
    # What only the block used.
    for unused, name in (("import sys\n", "sys."), ("from pathlib import Path\n", "Path(")):
        if name not in text:
            text = text.replace(unused, "", 1)
    text = re.sub(
        rf"^from {CORE}\.", f"from ansible_collections.{FQ}.plugins.module_utils.{CORE}.", text,
        flags=re.M,
    )  # fmt: skip
    return text.replace("  # noqa: E402", "")


def rewrite_yaml(text: str) -> str:
    """Tasks, handlers and playbooks: fully qualified modules, filters and roles.

    Only whole YAML positions are rewritten, never a word in prose or a
    variable of the same name (``ollama_ramdisk_pull`` is both a module and a
    variable, set only in defaults and inventories): a module is a key that
    starts a line (``check_tasks`` proves each one is a task's), a filter
    follows a ``|`` or is named to ``map()`` (``check_filters`` proves none is
    left), a role is the whole value of ``role:``/``name:`` or of a list item
    outside ``tags:`` (the roles tag their tasks with their names).
    """
    modules = "|".join(module_names())
    text = re.sub(
        rf"^(\s*(?:- )?){MODULE_PREFIX}({modules}):(?=\s)", rf"\1{FQ}.\2:", text, flags=re.M
    )
    filters = "|".join(FILTERS)
    text = re.sub(rf"\|\s*({filters})\b", rf"| {FQ}.\1", text)
    text = re.sub(rf"\bmap\((['\"])({filters})\1", rf"map(\1{FQ}.\2\1", text)
    role = re.compile(rf"^(\s*(?:- )?(?:role: |name: )?)({'|'.join(ROLES)})[ \t]*$")
    tags_indent: int | None = None
    lines = []
    for line in text.splitlines(keepends=True):
        indent = len(line) - len(line.lstrip(" "))
        stripped = line.strip()
        if (
            tags_indent is not None
            and stripped
            and not (indent > tags_indent or (indent == tags_indent and stripped.startswith("- ")))
        ):
            tags_indent = None
        if re.match(r"^\s*(?:- )?tags:(?:\s+&\S+)?\s*$", line):
            tags_indent = indent + (2 if stripped.startswith("- ") else 0)
            lines.append(line)
            continue
        lines.append(role.sub(rf"\1{FQ}.\2", line) if tags_indent is None else line)
    return "".join(lines)


def rewrite_core_path(text: str) -> str:
    """Where the role finds the core on the controller, to install it on hosts."""
    return text.replace(f"/../../module_utils/{CORE}", f"/../../plugins/module_utils/{CORE}")


def unchanged(text: str) -> str:
    return text


# ------------------------------------------------------------------ layout


def _role_rewrite(relative: Path) -> Callable[[str], str]:
    part = relative.parts[2] if len(relative.parts) > 2 else ""
    if part in ("tasks", "handlers"):
        return rewrite_yaml
    if part in ("defaults", "meta") or relative.name == "README.md":
        return rewrite_core_path
    return unchanged


def planned_files() -> Iterator[tuple[Path, Path, Callable[[str], str]]]:
    """(source in the repository, destination in the collection, rewrite)."""
    for path in sorted((ROOT / "collection").rglob("*")):
        if path.is_file() and path.name != "galaxy.yml":
            yield path, path.relative_to(ROOT / "collection"), unchanged
    yield ROOT / "collection/galaxy.yml", Path("galaxy.yml"), unchanged
    yield ROOT / "README.md", Path("README.md"), unchanged
    for name in module_names():
        yield (ROOT / f"library/{MODULE_PREFIX}{name}.py", Path(f"plugins/modules/{name}.py"),
               rewrite_module)  # fmt: skip
    for path in sorted((ROOT / "module_utils" / CORE).glob("*.py")):
        yield path, Path("plugins/module_utils") / CORE / path.name, unchanged
    yield (ROOT / "filter_plugins/ollama_ramdisk.py", Path("plugins/filter/ollama_ramdisk.py"),
           rewrite_filter)  # fmt: skip
    for role in ROLES:
        for path in sorted((ROOT / "roles" / role).rglob("*")):
            relative = path.relative_to(ROOT)
            if path.is_file() and "__pycache__" not in relative.parts:
                yield path, relative, _role_rewrite(relative)
    for path in sorted((ROOT / "playbooks").rglob("*.yml")):
        yield path, path.relative_to(ROOT), rewrite_yaml


def check_tasks(path: Path) -> None:
    """Fail when a module name was put where no task is: every mapping with a
    key of the collection's modules must be a named task."""

    def walk(node: object) -> Iterator[dict]:
        if isinstance(node, dict):
            yield node
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for mapping in walk(yaml.safe_load(path.read_text())):
        ours = [key for key in mapping if str(key).startswith(f"{FQ}.")]
        if ours and (len(ours) > 1 or "name" not in mapping):
            raise SystemExit(f"build-collection: {path}: {ours} is not a task's module")


def check_filters(path: Path) -> None:
    """Fail when a filter of the collection is still named without it: a role
    of the collection finds no filter by its short name."""
    bare = re.search(rf"(?<![\w.])({'|'.join(FILTERS)})\b", path.read_text())
    if bare:
        raise SystemExit(f"build-collection: {path}: {bare.group()} is not fully qualified")


def assemble(work: Path) -> Path:
    """Write the collection's tree under WORK/ansible_collections/NS/NAME."""
    tree = work / "ansible_collections" / NAMESPACE / NAME
    if tree.exists():
        shutil.rmtree(tree)
    for source, destination, rewrite in planned_files():
        target = tree / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rewrite(source.read_text()))
        target.chmod(source.stat().st_mode & 0o755)
        if rewrite is rewrite_yaml:
            check_tasks(target)
            check_filters(target)
    return tree


def build(tree: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    version = galaxy_field("version")
    tarball = out / f"{NAMESPACE}-{NAME}-{version}.tar.gz"
    tarball.unlink(missing_ok=True)
    galaxy = Path(sys.executable).with_name("ansible-galaxy")
    subprocess.run(
        [str(galaxy) if galaxy.exists() else "ansible-galaxy", "collection", "build",
         "--output-path", str(out), str(tree)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return tarball


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the tarball goes")
    parser.add_argument("--work", type=Path, default=ROOT / "build/collection",
                        help="where the collection's tree is assembled")  # fmt: skip
    parser.add_argument("--tree-only", action="store_true", help="assemble, do not pack")
    options = parser.parse_args()
    tree = assemble(options.work.resolve())
    print(tree if options.tree_only else build(tree, options.out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
