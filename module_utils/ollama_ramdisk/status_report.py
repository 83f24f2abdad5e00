"""What ``status`` collects and prints: the store's residency, with Ollama's
loaded models and the last runs when asked, and the textfile for node_exporter.

Kept apart from the command line (cli.py) so that the metrics timer's one
job reads in one file: look (stat, one ``/api/ps``, the reports), write the
textfile atomically, say the same in JSON or in lines.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import RamdiskError
from .metrics import (
    DEFAULT_MAX_MODEL_SERIES,
    OllamaView,
    look_at_ollama,
    models_left_out,
    write_prometheus,
)
from .runreport import RunReport, confirmed_by_unit, read_reports
from .sizes import human
from .status import StoreStatus, store_status
from .store import Store
from .systemd_units import UnitResult, last_result


@dataclass(frozen=True)
class Collected:
    status: StoreStatus
    ollama: OllamaView | None
    reports: Mapping[str, RunReport] | None
    seconds: float
    at: float

    def to_dict(self) -> dict[str, Any]:
        outcome = self.status.to_dict()
        if self.ollama is not None:
            outcome["ollama"] = self.ollama.to_dict(self.at)
        if self.reports is not None:
            outcome["last_runs"] = {
                command: report.to_dict() for command, report in self.reports.items()
            }
        outcome["collect_seconds"] = round(self.seconds, 6)
        return outcome


def collect(
    store: Store,
    *,
    source: Store | None,
    ollama_host: str | None,
    state_dir: Path | None,
    warn: Callable[[str], None],
    verify_unit: str | None = None,
) -> Collected:
    """One look at everything the metrics show; Ollama only when a host is
    given; the check's success as ``verify_unit``'s last run says, when given."""
    started = time.monotonic()
    status = store_status(store, source=source)
    ollama = look_at_ollama(ollama_host) if ollama_host is not None else None
    reports = read_reports(state_dir, warn) if state_dir is not None else None
    if reports is not None and verify_unit is not None:
        reports = confirmed_by_unit(reports, "verify", _unit_result(verify_unit, warn))
    return Collected(status, ollama, reports, time.monotonic() - started, time.time())


def _unit_result(unit: str, warn: Callable[[str], None]) -> UnitResult | None:
    try:
        return last_result(unit)
    except RamdiskError as error:
        warn(f"{error}; the verify report alone says how the last check ended")
        return None


def write_textfile(
    collected: Collected,
    path: Path,
    max_models: int = DEFAULT_MAX_MODEL_SERIES,
    warn: Callable[[str], None] | None = None,
) -> None:
    left_out = models_left_out(collected.status, collected.ollama, max_models)
    if warn is not None and any(left_out.values()):
        warn(
            f"metrics: {left_out['store']} model(s) of the store and {left_out['ollama']} of"
            f" Ollama's loaded ones got no per-model series (at most {max_models} each;"
            " --metrics-max-models); ollama_ramdisk_models_left_out counts them"
        )
    write_prometheus(
        collected.status,
        path,
        ollama=collected.ollama,
        reports=collected.reports,
        collect_seconds=collected.seconds,
        now=collected.at,
        max_models=max_models,
    )


def status_lines(outcome: Mapping[str, Any]) -> list[str]:
    mount = outcome.get("mount")
    lines = [f"store {outcome['store']}"]
    if mount:
        size, used = mount["size_bytes"], mount["used_bytes"]
        percent = f" ({100 * used / size:.0f}%)" if size else ""
        lines.append(
            f"mount {mount['path']} ({mount['fstype']}): {human(size)}, "
            f"{human(used)} used{percent}, {human(mount['available_bytes'])} free"
        )
    models = outcome["models"]
    lines.append(f"models ({len(models)}):")
    for model in models:
        note = ""
        if model.get("missing"):
            note = f"  ({len(model['missing'])} of {model['blobs']} blobs missing)"
        elif model.get("problem"):
            note = f"  ({model['problem']})"
        lines.append(
            f"  {model['residency']:<8} {human(model['bytes']):>10}  {model['name']}{note}"
        )
    for name in outcome.get("ram_only", []):
        lines.append(f"ram only: {name} (not in the source; lost at reboot unless copied back)")
    if "ollama" in outcome:
        lines += _ollama_lines(outcome["ollama"])
    for command, report in outcome.get("last_runs", {}).items():
        how = (
            "ok"
            if report["ok"]
            else f"FAILED ({report['error'] or 'exit ' + str(report['exit_code'])})"
        )
        ago = max(0.0, time.time() - report["finished_at"])
        lines.append(f"last {command}: {how}, {report['seconds']:.1f} s, {ago:.0f} s ago")
    return lines


def _ollama_lines(ollama: Mapping[str, Any]) -> list[str]:
    if not ollama["up"]:
        return [f"ollama {ollama['url']}: not answering ({ollama['error']})"]
    lines = [f"ollama {ollama['url']}: {len(ollama['loaded'])} model(s) loaded"]
    for model in ollama["loaded"]:
        until = (
            "kept for ever"
            if model["never_expires"]
            else (
                "expiry unknown"
                if model["expires_in"] is None
                else f"unloaded in {model['expires_in']:.0f} s"
            )
        )
        lines.append(
            f"  loaded   {human(model['size_bytes']):>10}  {model['name']}"
            f" ({human(model['vram_bytes'])} on GPUs, {until})"
        )
    return lines
