"""What systemd says about a unit: its properties (``systemctl show``) and how
its last run ended.

A run report in the state directory is written by the run itself, as the
``ollama`` user, who may also write a forged one; a unit's result is kept by
systemd, which only root can change. So the metrics take a unit's result
over its report's word where the two disagree.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidOption
from .sizes import is_decimal


def show(unit: str, properties: Sequence[str], option: str = "unit") -> dict[str, str]:
    """``systemctl show`` of ``properties``; InvalidOption naming the unit when
    systemctl is missing or refuses."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise InvalidOption(f"{option}: {unit}: systemctl is not installed here")
    # A fixed program, the unit after --: nothing here is a shell.
    try:
        completed = subprocess.run(
            [systemctl, "show", f"--property={','.join(properties)}", "--", unit],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        raise InvalidOption(f"{option}: systemctl show {unit}: no answer within 30 s") from None
    if completed.returncode != 0:
        raise InvalidOption(f"{option}: systemctl show {unit}: {completed.stderr.strip()}")
    return dict(line.partition("=")[::2] for line in completed.stdout.splitlines() if "=" in line)


@dataclass(frozen=True)
class UnitResult:
    """How a unit's last run since boot ended, as systemd keeps it."""

    unit: str
    ok: bool
    result: str  # systemd's Result=: success, exit-code, signal, timeout, ...
    exit_status: int
    finished_at: float  # seconds since the epoch


_RESULT_PROPERTIES = ("LoadState", "Result", "ExecMainStatus", "ExecMainExitTimestampMonotonic")


def parse_result(
    unit: str, properties: dict[str, str], now: float, monotonic: float
) -> UnitResult | None:
    """The last run's result from ``systemctl show``'s properties; None when the
    unit is not installed or has not run since boot. ``now`` and ``monotonic``
    are the clocks at the time of asking (systemd gives the exit on the
    monotonic clock: the same on every systemd version)."""
    exited = properties.get("ExecMainExitTimestampMonotonic", "")
    if properties.get("LoadState") != "loaded" or not is_decimal(exited) or int(exited) == 0:
        return None
    status = properties.get("ExecMainStatus", "")
    exit_status = int(status) if is_decimal(status) else -1
    result = properties.get("Result", "") or "unknown"
    return UnitResult(
        unit=unit,
        ok=result == "success" and exit_status == 0,
        result=result,
        exit_status=exit_status,
        finished_at=now - (monotonic - int(exited) / 1e6),
    )


def last_result(unit: str) -> UnitResult | None:
    """How ``unit`` last ended since boot; None if it has not run or is not installed."""
    properties = show(unit, _RESULT_PROPERTIES, option="verify-unit")
    return parse_result(unit, properties, time.time(), time.clock_gettime(time.CLOCK_MONOTONIC))
