"""A freshly mounted tmpfs for one benchmark run: every fill starts from an empty
mount, and nothing is left mounted, whatever the run did."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def fresh_tmpfs(parent: Path, options: str, prefix: str = "ramdisk-") -> Iterator[Path]:
    """A tmpfs mounted with ``options`` on a new directory under ``parent``;
    unmounted (lazily if busy) and the directory removed on the way out."""
    point = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                       check=True, capture_output=True)  # fmt: skip
    except BaseException:
        point.rmdir()
        raise
    try:
        yield point
    finally:
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
        point.rmdir()
