"""Run the Ansible modules in library/ the way Ansible does, in-process.

Ansible hands a module its arguments as JSON and reads one JSON object from
its stdout; ``exit_json``/``fail_json`` end the process with ``SystemExit``.
``run_module`` does the same: it sets the arguments, calls ``main()``,
catches the exit and parses what was printed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import ansible.module_utils
from ansible.module_utils.testing import patch_module_args

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "library"

# What ansible.cfg's module_utils= does for a real run: the core package is
# importable as ansible.module_utils.ollama_ramdisk.
if str(REPO / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(REPO / "module_utils"))


@dataclass
class ModuleRun:
    """What a module returned: its exit status and its JSON result."""

    status: int
    result: dict[str, Any]

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def msg(self) -> str:
        return str(self.result.get("msg", ""))


def load_module(name: str) -> ModuleType:
    """Import library/<name>.py as a fresh module object."""
    spec = importlib.util.spec_from_file_location(f"library_{name}", LIBRARY / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_module(
    name: str,
    args: Mapping[str, Any],
    check_mode: bool = False,
    diff: bool = False,
) -> ModuleRun:
    """Run library/<name>.py's main() with ``args`` as Ansible would."""
    module = load_module(name)
    module_args = {
        **{key: str(value) if isinstance(value, Path) else value for key, value in args.items()},
        "_ansible_check_mode": check_mode,
        "_ansible_diff": diff,
    }
    stdout = io.StringIO()
    status: int | str | None = None
    with patch_module_args(module_args), contextlib.redirect_stdout(stdout):
        try:
            module.main()
        except SystemExit as exit_:
            status = exit_.code
    assert status is not None, f"{name} returned without exit_json/fail_json"
    assert isinstance(status, int), f"{name} exited with {status!r}"
    printed = stdout.getvalue().strip()
    assert printed, f"{name} printed nothing"
    return ModuleRun(status=status, result=json.loads(printed.splitlines()[-1]))
