"""node_exporter textfile metrics: the store's residency (status.py), what
Ollama has loaded (``/api/ps``), and how the last refill, write-back and
integrity check ended (runreport.py).

Every series is a gauge labelled by ``store``, so that one host with two RAM
disks, or a dashboard over a fleet, tells them apart. Collecting is cheap:
status stats blobs and never hashes them; Ollama is asked once, with a short
timeout, and a server that does not answer is ``ollama_ramdisk_ollama_up 0``,
not a failed run. The file is replaced atomically, so node_exporter never
reads half of one.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .defaults import METRICS_MAX_MODELS
from .desttree import TEMP_FLAGS
from .errors import RamdiskError
from .identity import acting_as, directory_identity
from .ollama_api import RunningModel, api_base, running_models
from .runreport import REPORTED_COMMANDS, SUMMARIES, RunReport
from .safeio import open_directory
from .status import RESIDENCIES, ModelStatus, StoreStatus
from .stopping import signals_deferred

TEXTFILE_MODE = 0o644
# Any client of Ollama's API can make models, each adding a handful of series
# labelled with its name (20,000 copies made 80,000 series, 44 MiB a scrape):
# only so many models get per-model series, the rest are counted.
DEFAULT_MAX_MODEL_SERIES = METRICS_MAX_MODELS
# Ollama writes a keep-alive of -1 as an expiry centuries away: that is "never".
NEVER_AFTER_SECONDS = 100 * 365 * 24 * 3600


@dataclass(frozen=True)
class OllamaView:
    """One look at the server: whether it answered, and what it had loaded."""

    base: str
    up: bool
    models: tuple[RunningModel, ...] = ()
    error: str | None = None

    def to_dict(self, now: float) -> dict[str, object]:
        return {
            "url": self.base,
            "up": self.up,
            "error": self.error,
            "loaded": [_loaded_entry(model, now) for model in self.models],
        }


def _loaded_entry(model: RunningModel, now: float) -> dict[str, object]:
    left = _expiry(model, now)
    never = left is not None and math.isinf(left)
    return {
        "name": model.name.qualified,
        "size_bytes": model.size_bytes,
        "vram_bytes": model.vram_bytes,
        # JSON has no infinity: a keep-alive of -1 is never_expires.
        "expires_in": None if never else left,
        "never_expires": never,
    }


def look_at_ollama(host: str | None, timeout: float = 3.0) -> OllamaView:
    base = api_base(host)
    try:
        return OllamaView(base=base, up=True, models=tuple(running_models(base, timeout)))
    except RamdiskError as error:
        return OllamaView(base=base, up=False, error=str(error))


def _expiry(model: RunningModel, now: float) -> float | None:
    """Seconds until Ollama unloads the model; inf for never; None if unknown."""
    if model.expires_at is None:
        return None
    left = model.expires_at - now
    return math.inf if left > NEVER_AFTER_SECONDS else max(0.0, round(left, 3))


# ---------------------------------------------------------------- the format


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items())


def _value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))


def _metric(name: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{{{labels}}} {_value(value)}" for labels, value in samples]
    return lines


# ---------------------------------------------------------------- the series


def series_models(status: StoreStatus, max_models: int) -> tuple[ModelStatus, ...]:
    """The models that get per-model series, at most ``max_models``: those the
    disk store has too (an operator's, not only an API client's) first, then
    the largest, then by name; shown in the store's own order."""
    if len(status.models) <= max_models:
        return status.models
    ram_only = set(status.ram_only or ())
    ranked = sorted(
        status.models,
        key=lambda model: (model.name in ram_only, -model.bytes, model.name.qualified),
    )
    kept = {id(model) for model in ranked[:max_models]}
    return tuple(model for model in status.models if id(model) in kept)


def _store_series(status: StoreStatus, models: tuple[ModelStatus, ...]) -> list[str]:
    store = str(status.store)
    base = _labels(store=store)
    lines: list[str] = []
    if status.mount is not None:
        where = _labels(store=store, mountpoint=status.mount.path, fstype=status.mount.fstype)
        lines += _metric(
            "ollama_ramdisk_size_bytes",
            "Size of the file system holding the model store.",
            [(where, status.mount.size_bytes)],
        )
        lines += _metric(
            "ollama_ramdisk_used_bytes",
            "Bytes used on the file system holding the model store.",
            [(where, status.mount.used_bytes)],
        )
        lines += _metric(
            "ollama_ramdisk_available_bytes",
            "Bytes still free on the file system holding the model store.",
            [(where, status.mount.available_bytes)],
        )
    lines += _metric("ollama_ramdisk_models", "Models in the store.", [(base, len(status.models))])
    lines += _metric(
        "ollama_ramdisk_model_bytes",
        "Bytes of a model: its blobs and its manifest.",
        [(_labels(store=store, model=model.name.qualified), model.bytes) for model in models],
    )
    lines += _metric(
        "ollama_ramdisk_model_resident",
        "1 for the residency a model has (ram, linked to disk, or partial), 0 for the others.",
        [
            (
                _labels(store=store, model=model.name.qualified, residency=residency),
                int(model.residency == residency),
            )
            for model in models
            for residency in RESIDENCIES
        ],
    )
    if status.ram_only is not None:
        ram_only = set(status.ram_only)
        lines += _metric(
            "ollama_ramdisk_ram_only_models",
            "Models that exist only in the store, not in the disk store: the write-back has not"
            " copied them (yet); lost at reboot without it.",
            [(base, len(status.ram_only))],
        )
        lines += _metric(
            "ollama_ramdisk_ram_only_model",
            "1 for each model that exists only in the store, not in the disk store.",
            [
                (_labels(store=store, model=model.name.qualified), 1)
                for model in models
                if model.name in ram_only
            ],
        )
    return lines


def _ollama_series(
    store: str, view: OllamaView, models: tuple[RunningModel, ...], now: float
) -> list[str]:
    base = _labels(store=store)
    lines = _metric(
        "ollama_ramdisk_ollama_up",
        "1 when Ollama's API answered /api/ps, 0 when it did not.",
        [(base, int(view.up))],
    )
    if not view.up:
        return lines
    lines += _metric(
        "ollama_ramdisk_ollama_loaded_models",
        "Models Ollama holds in memory now (/api/ps).",
        [(base, len(view.models))],
    )
    each = [(model, _labels(store=store, model=model.name.qualified)) for model in models]
    lines += _metric(
        "ollama_ramdisk_ollama_model_size_bytes",
        "Memory a loaded model takes, as Ollama reports it (/api/ps size).",
        [(labels, model.size_bytes) for model, labels in each],
    )
    lines += _metric(
        "ollama_ramdisk_ollama_model_vram_bytes",
        "Part of a loaded model's memory on GPUs (/api/ps size_vram).",
        [(labels, model.vram_bytes) for model, labels in each],
    )
    expiries = [(labels, _expiry(model, now)) for model, labels in each]
    lines += _metric(
        "ollama_ramdisk_ollama_model_expiry_seconds",
        "Seconds until Ollama unloads a loaded model; +Inf for a keep-alive of -1.",
        [(labels, left) for labels, left in expiries if left is not None],
    )
    return lines


_COUNT_HELP = {
    "copied_blobs": "Blobs the last {command} copied.",
    "copied_bytes": "Bytes the last {command} copied.",
    "linked_blobs": "Blobs the last {command} linked to the disk store (cold models).",
    "fallback_blobs": "Hot blobs the last {command} could not copy and served through a link"
    " to the disk store instead.",
    "pruned": "Files the last {command} pruned.",
    "written_models": "Models the last {command} wrote to the disk store.",
    "forgotten_models": "Models the last {command} dropped from the record (removed in RAM).",
    "checked_blobs": "Blobs the last {command} hashed.",
    "checked_bytes": "Bytes the last {command} hashed.",
    "corrupt_blobs": "Blobs the last {command} found corrupt (hash differs from the name).",
    "missing_blobs": "Blobs the last {command} found missing or not regular files.",
    "repaired_blobs": "Blobs the last {command} repaired from the disk store.",
}
# The refill is populate's run at every start of ollama.service.
_SERIES_NAME = {"populate": "refill", "writeback": "writeback", "verify": "verify"}


def _run_series(store: str, reports: Mapping[str, RunReport]) -> list[str]:
    found = [(command, reports[command]) for command in REPORTED_COMMANDS if command in reports]
    per = [(_labels(store=store, command=command), report) for command, report in found]
    lines = _metric(
        "ollama_ramdisk_last_run_timestamp_seconds",
        "When the last run of a command (populate: the refill; writeback; verify) ended.",
        [(labels, report.finished_at) for labels, report in per],
    )
    lines += _metric(
        "ollama_ramdisk_last_run_duration_seconds",
        "How long the last run of a command took.",
        [(labels, report.seconds) for labels, report in per],
    )
    lines += _metric(
        "ollama_ramdisk_last_run_success",
        "1 when the last run of a command succeeded, 0 when it failed (see its journal).",
        [(labels, int(report.ok)) for labels, report in per],
    )
    base = _labels(store=store)
    for command, report in found:
        for key in SUMMARIES[command]:
            if key in report.counts:
                lines += _metric(
                    f"ollama_ramdisk_last_{_SERIES_NAME[command]}_{key}",
                    _COUNT_HELP[key].format(command=_SERIES_NAME[command]),
                    [(base, report.counts[key])],
                )
    return lines


def models_left_out(
    status: StoreStatus, ollama: OllamaView | None, max_models: int
) -> dict[str, int]:
    """How many models get no per-model series, by where they were seen."""
    return {
        "store": max(0, len(status.models) - max_models),
        "ollama": max(0, len(ollama.models) - max_models) if ollama and ollama.up else 0,
    }


def prometheus_text(
    status: StoreStatus,
    *,
    ollama: OllamaView | None = None,
    reports: Mapping[str, RunReport] | None = None,
    collect_seconds: float | None = None,
    now: float | None = None,
    max_models: int = DEFAULT_MAX_MODEL_SERIES,
) -> str:
    """The textfile for a store, with Ollama's and the last runs' series when
    given; per-model series for at most ``max_models`` models of each kind."""
    store = str(status.store)
    lines = _store_series(status, series_models(status, max_models))
    if ollama is not None:
        loaded = ollama.models[:max_models]
        lines += _ollama_series(store, ollama, loaded, time.time() if now is None else now)
    left_out = models_left_out(status, ollama, max_models)
    lines += _metric(
        "ollama_ramdisk_models_left_out",
        f"Models given no per-model series: beyond the first {max_models} (the cap,"
        " --metrics-max-models), by where they were seen (the store, Ollama's /api/ps).",
        [(_labels(store=store, seen=seen), count) for seen, count in left_out.items()],
    )
    if reports:
        lines += _run_series(store, reports)
    if collect_seconds is not None:
        lines += _metric(
            "ollama_ramdisk_collect_duration_seconds",
            "How long collecting these metrics took (stat of every blob, one /api/ps).",
            [(_labels(store=store), round(collect_seconds, 6))],
        )
    return "\n".join(lines) + "\n"


def write_prometheus(status: StoreStatus, path: Path, **series: object) -> None:
    """Write the metrics atomically: node_exporter never reads a half-written file.

    The temporary file sits in the same directory (same file system, so the
    rename is atomic) and does not end in ``.prom``, which the textfile
    collector would pick up. ``series`` are prometheus_text's keywords.
    """
    text = prometheus_text(status, **series)  # type: ignore[arg-type]
    with signals_deferred():  # no temporary file left by a signal between two lines
        _replace_textfile(path, text)


def _replace_textfile(path: Path, text: str) -> None:
    """Create, fill and rename through one descriptor of the directory, opened
    without following links, with the rights of whoever may change that
    directory: the owner of a directory above (a ``prometheus`` home) could
    swap the textfile directory for a link between two calls by name, and
    root would then write wherever the link points."""
    directory = open_directory(path.parent)
    try:
        with acting_as(directory_identity(path.parent, os.fstat(directory))):
            _replace_in(directory, path.name, text)
    finally:
        os.close(directory)


def _replace_in(directory: int, name: str, text: str) -> None:
    temporary = f".{name}.{secrets.token_hex(8)}.tmp"
    # mkstemp's 0600 first; node_exporter usually runs as another user, so
    # fchmod to 0644 after (never chmod by name: the name could be swapped).
    descriptor = os.open(temporary, TEMP_FLAGS, 0o600, dir_fd=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), TEXTFILE_MODE)
            os.fsync(handle.fileno())
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise
