#!/usr/bin/env python3
"""Print, as JSON, everything the toolkit may change on a host (test fixture).

Two snapshots taken around a refused run must be equal: the run changed nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

WATCHED = [
    "/etc/fstab",
    "/etc/sysctl.d",
    "/etc/systemd/system/ollama.service.d",
    "/etc/ollama-ramdisk",
    "/usr/local/sbin/ollama-ramdisk",
    "/opt/ollama-ramdisk",
]


def files(path: Path) -> dict[str, str | None]:
    """Every file under path with the sha256 of its content (None for a directory)."""
    if not path.exists():
        return {}
    if path.is_file():
        return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()}
    found: dict[str, str | None] = {str(path): None}
    for entry in sorted(path.rglob("*")):
        if "__pycache__" in entry.parts:
            continue
        found.update(files(entry) if entry.is_file() else {str(entry): None})
    return found


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()


def main() -> int:
    ram = Path(sys.argv[1] if len(sys.argv) > 1 else "/mnt/ollama")
    state: dict[str, object] = {}
    for watched in WATCHED:
        state.update(files(Path(watched)))
    state["mount"] = run("findmnt", "--noheadings", "--output", "FSTYPE,SIZE,OPTIONS", str(ram))
    state["ollama.service"] = run(
        "systemctl", "show", "--property=MainPID,InvocationID,NeedDaemonReload", "ollama.service"
    )
    state["ramdisk"] = sorted(
        f"{os.path.relpath(p, ram)}:{p.lstat().st_ino}" for p in ram.rglob("*") if ram.is_mount()
    )
    state["fstab_ramdisk_lines"] = [
        line for line in Path("/etc/fstab").read_text().splitlines() if str(ram) in line.split()
    ]
    print(json.dumps(state, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
