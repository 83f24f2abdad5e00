"""The last run of each command that changes a store, kept for the metrics.

``populate`` (the refill at every start), ``writeback`` and ``verify`` each
replace ``last-<command>.json`` in the state directory when they end, with
success or not: when it ended, how long it took, its exit status, the first
line of its error, and the counts the metrics show (blobs copied, served
through fallback links, models written back, blobs corrupt and repaired).
``status --state-dir`` reads them back into the metrics; nothing else does.

The state directory belongs to Ollama's user (the refill runs as that user),
so a root run writes there with that user's rights, as it does in the
stores, and every report is read as hostile: a regular file, no link
followed, bounded in size, every field checked. A report that cannot be
written or read is a warning, never a failed run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .desttree import DestTree
from .errors import RamdiskError
from .identity import acting_as, run_identity
from .systemd_units import UnitResult

REPORTED_COMMANDS = ("populate", "writeback", "verify")
MAX_REPORT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 500


def _count(key: str) -> Callable[[Mapping[str, Any]], int]:
    """A list's length or a number's value from a command's JSON result."""

    def read(outcome: Mapping[str, Any]) -> int:
        value = outcome.get(key, 0)
        return len(value) if isinstance(value, (list, dict)) else int(value or 0)

    return read


# The counts kept of each command's result (its JSON keys, see DESIGN's contract).
SUMMARIES: dict[str, dict[str, Callable[[Mapping[str, Any]], int]]] = {
    "populate": {
        "copied_blobs": _count("copied"),
        "copied_bytes": _count("bytes_copied"),
        "linked_blobs": _count("linked"),
        "fallback_blobs": _count("fallback"),
        "pruned": _count("pruned"),
    },
    "writeback": {
        "written_models": _count("written"),
        "copied_bytes": _count("bytes_copied"),
        "forgotten_models": _count("forgotten"),
    },
    "verify": {
        "checked_blobs": _count("checked"),
        "checked_bytes": _count("bytes"),
        "corrupt_blobs": _count("corrupt"),
        "missing_blobs": _count("missing"),
        "repaired_blobs": _count("repaired"),
    },
}


def report_name(command: str) -> str:
    return f"last-{command}.json"


@dataclass(frozen=True)
class RunReport:
    """How one run of a command ended."""

    command: str
    finished_at: float
    seconds: float
    exit_code: int
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "finished_at": round(self.finished_at, 3),
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
            "ok": self.ok,
            "error": self.error,
            "counts": dict(self.counts),
        }


def make_report(
    command: str,
    *,
    seconds: float,
    exit_code: int,
    outcome: Mapping[str, Any] | None = None,
    error: str | None = None,
    finished_at: float | None = None,
) -> RunReport:
    """The report of a run that just ended; a dry run is never reported (callers)."""
    counts = {key: read(outcome) for key, read in SUMMARIES[command].items()} if outcome else {}
    first_line = (
        error.strip().splitlines()[0][:MAX_ERROR_CHARS] if error and error.strip() else None
    )
    return RunReport(
        command=command,
        finished_at=time.time() if finished_at is None else finished_at,
        seconds=max(0.0, seconds),
        exit_code=exit_code,
        error=first_line,
        counts=counts,
    )


def write_report(state_dir: Path, report: RunReport, warn: Callable[[str], None]) -> bool:
    """Replace the command's report atomically; False (with a warning) when it
    cannot be written."""
    data = (json.dumps(report.to_dict(), indent=2) + "\n").encode("utf-8")
    try:
        with (
            acting_as(run_identity([Path(state_dir)])),
            DestTree(state_dir, option="state-dir") as tree,
        ):
            if not tree.open_root():
                warn(f"state-dir: {state_dir} is missing; the {report.command} report is not kept")
                return False
            tree.install_bytes(report_name(report.command), data)
            tree.remove_staging_if_empty()
    except (OSError, ValueError, RamdiskError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        warn(f"state-dir: cannot keep the {report.command} report in {state_dir}: {reason}")
        return False
    return True


def read_reports(state_dir: Path, warn: Callable[[str], None]) -> dict[str, RunReport]:
    """Each command's last report found in ``state_dir``; bad ones are warned of and left out."""
    reports: dict[str, RunReport] = {}
    try:
        with (
            acting_as(run_identity([], [Path(state_dir)])),
            DestTree(state_dir, option="state-dir") as tree,
        ):
            if not tree.open_root():
                return reports
            for command in REPORTED_COMMANDS:
                path = Path(state_dir) / report_name(command)
                raw = tree.read_regular(report_name(command), MAX_REPORT_BYTES)
                if raw is None:
                    if tree.lstat(report_name(command)) is not None:
                        warn(f"{path} is not a regular file: ignored")
                    continue
                report = parse_report(raw, command)
                if report is None:
                    warn(f"{path} is not a report of a {command} run: ignored")
                    continue
                reports[command] = report
    except (OSError, ValueError, RamdiskError) as error:
        warn(f"state-dir: cannot read {state_dir}: {getattr(error, 'strerror', None) or error}")
    return reports


def parse_report(raw: bytes, command: str) -> RunReport | None:
    """A report as written by ``write_report``, every field checked; None otherwise."""
    try:
        document = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_REPORT_BYTES else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not _well_formed(document, command):
        return None
    if not isinstance(document, dict):
        raise AssertionError("_well_formed takes only an object")
    error = document["error"]
    return RunReport(
        command=command,
        finished_at=float(document["finished_at"]),
        seconds=float(document["seconds"]),
        exit_code=int(document["exit_code"]),
        error=error[:MAX_ERROR_CHARS] if error else None,
        counts={key: int(value) for key, value in document["counts"].items()},
    )


def _well_formed(document: object, command: str) -> bool:
    if not isinstance(document, dict) or document.get("command") != command:
        return False
    counts, error = document.get("counts"), document.get("error")
    return (
        _finite(document.get("finished_at"))
        and _finite(document.get("seconds"))
        and _whole(document.get("exit_code"))
        and (error is None or isinstance(error, str))
        and isinstance(counts, dict)
        and all(key in SUMMARIES[command] and _whole(value) for key, value in counts.items())
    )


def _finite(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def confirmed_by_unit(
    reports: Mapping[str, RunReport], command: str, unit: UnitResult | None
) -> dict[str, RunReport]:
    """The reports, with ``command``'s success as its unit's last run says too.

    The report is the ``ollama`` user's to write, the unit's result systemd's:
    a run counts as a success only when both say so, so a forged "ok" cannot
    hide a failed check, and a report removed leaves the unit's failure. A
    run by hand does not clear a failed unit: the next run of the unit does.
    """
    confirmed = dict(reports)
    report = reports.get(command)
    if unit is None or (unit.ok and report is not None):
        return confirmed
    if unit.ok:
        confirmed[command] = RunReport(command, unit.finished_at, 0.0, 0)
    elif report is None:
        confirmed[command] = RunReport(
            command, unit.finished_at, 0.0, max(1, unit.exit_status), _unit_failed(unit)
        )
    elif report.ok:
        confirmed[command] = RunReport(
            command,
            report.finished_at,
            report.seconds,
            max(1, unit.exit_status),
            _unit_failed(unit) + "; its report said it succeeded",
            dict(report.counts),
        )
    return confirmed


def _unit_failed(unit: UnitResult) -> str:
    return f"{unit.unit} ended with {unit.result} (exit status {unit.exit_status})"
