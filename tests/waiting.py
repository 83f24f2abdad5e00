"""Waiting for an event with a bound, never for a fixed time: what a test that
watches another process needs on a busy machine."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from ollama_ramdisk.desttree import STAGING_NAME


def allocated(path: Path) -> int:
    """Bytes written so far, as allocated (what a copy has really written); 0 for
    a file renamed into place meanwhile."""
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def wait_for_a_growing_temp_file(
    store: Path, process: subprocess.Popen, nbytes: int, bound: float = 60.0
) -> None:
    """Return once a temporary file in ``store``'s staging directory holds
    ``nbytes``; fail if ``process`` ends or ``bound`` seconds pass first."""
    staging = store / STAGING_NAME
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline and process.poll() is None:
        try:
            temps = list(staging.iterdir()) if staging.is_dir() else []
        except FileNotFoundError:
            temps = []  # the run removed its staging directory meanwhile
        if any(allocated(temp) > nbytes for temp in temps):
            return
        time.sleep(0.001)
    pytest.fail(f"no temporary file in {staging} grew past {nbytes} bytes before the run ended")
