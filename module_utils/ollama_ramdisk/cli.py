"""``ollama-ramdisk``: plan, populate, verify and show a RAM disk of Ollama models.

The one place where exceptions become exit statuses: 0 success, 1 the
operation failed, 2 invalid input (RamdiskError.exit_code; argparse's own
errors are invalid input too; an OSError is a failed operation, reported with
its path).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .config import (
    load_config,
    to_count,
    to_names,
    to_number,
    to_path,
    to_size,
    to_text,
)
from .errors import EXIT_FAILED, EXIT_INVALID, EXIT_OK, InvalidOption, RamdiskError
from .limits import service_limits
from .names import parse_names
from .plan import DEFAULT_HEADROOM, Plan, build_plan, check_headroom, resolve_model_set
from .runreport import REPORTED_COMMANDS, make_report, write_report
from .safeio import MAX_DEFAULT_JOBS, default_jobs
from .sizes import human
from .store import Store

PROG = "ollama-ramdisk"
EXIT_INTERRUPTED = 130


def _exit_status(failure: str) -> str:
    """The EXIT STATUS section of a command's help, with what makes it fail."""
    return (
        "exit status:\n"
        "  0  success\n"
        f"  1  the operation failed: {failure}\n"
        "  2  invalid input: bad model name, model not in the source store,\n"
        "     malformed manifest, bad option or config file"
    )


EXIT_STATUS = _exit_status("does not fit, out of space, verification\n     mismatch, I/O error")

MAIN_DESCRIPTION = """\
Keep chosen Ollama models resident in a tmpfs RAM disk.

A RAM disk is a copy of part of an Ollama store (OLLAMA_MODELS): the
manifests of the chosen models and their blobs, each blob once even when
several models share it. "Hot" models are copied into RAM; "cold" models are
visible to Ollama too, their blobs linked to the disk store. Ollama then
serves from the RAM disk, and switching between large models takes seconds.

A MODEL is named as Ollama names it: [host/][namespace/]model[:tag], for
example llama3.1:70b or hf.co/user/repo:Q4_K_M. A SIZE is a number of bytes
or a number with k, m, g or t (powers of 1024)."""

MAIN_EPILOG = f"""\
configuration:
  --config FILE reads the long options from a JSON file (YAML too where
  PyYAML is installed): {{"source": "...", "dest": "...", "models": [...],
  "cold": [...], "fallback-link": true, ...}}. Options given on the command
  line override the file. One file serves every command: keys a command has
  no option for are ignored; unknown keys are an error. verify and status
  read the store from "store", else from "dest" (the RAM disk).

examples:
  {PROG} plan --source /usr/share/ollama/.ollama/models llama3.1:70b qwen2.5:32b
  {PROG} populate --config /etc/ollama-ramdisk/config.json
  {PROG} verify --store /mnt/ollama/models --repair --source /usr/share/ollama/.ollama/models
  {PROG} status --store /mnt/ollama/models --json

{EXIT_STATUS}

Run '{PROG} COMMAND --help' for a command's options."""

PLAN_DESCRIPTION = """\
Size a RAM disk for a model set, and check that it fits in memory.

Every MODEL's manifest is read from the source store and each of its blobs
checked to exist with the size the manifest states; every missing or
malformed model is reported together. Blobs shared between models are
counted once; tmpfs allocates whole pages, so each file is rounded up to
4096 bytes. The size is ceil(tmpfs bytes x headroom) in whole MiB; it fits
when it is at most the host's memory (or its cgroup limit, if lower) minus
the reserve left to the system, to Ollama and to models loaded without
memory mapping. Cold models are checked but not counted."""

PLAN_EPILOG = f"""\
output (--json keys):
  models (name, manifest, blobs, bytes), blob_count, bytes, tmpfs_bytes,
  headroom, size_bytes, size (fstab form), mem_total, reserve, gpus, mmap,
  mmap_reason, load_copy_bytes (what a load adds when it copies the weights),
  limits (source, bytes, needed, fits), limit_source (the tightest), fits.
  The plan is printed even when it does not fit.

examples:
  {PROG} plan --source /usr/share/ollama/.ollama/models llama3.2:3b mistral:7b
  {PROG} plan --source /srv/ollama --cold qwen2.5:72b --headroom 1.1 llama3.1:8b
  {PROG} plan --config /etc/ollama-ramdisk/config.json --json
  {PROG} plan --source /srv/ollama --mem-total 512g --reserve 48g llama3.1:405b
  {PROG} plan --config /etc/ollama-ramdisk/config.json --unit ollama.service
  {PROG} plan --source /srv/ollama --gpus --mem-total 1t --unit-memory-max 600g llama3.1:405b

{_exit_status("the set does not fit in memory, or an I/O error")}"""

POPULATE_DESCRIPTION = """\
Copy a model set from the disk store into the RAM disk, safely and only once.

After success every hot model's manifest in DEST is byte-identical to the
source's, and each of its blobs is a regular file in DEST/blobs, identical
to the source's. A cold model's manifest is copied and its blobs linked to
the source's. Nothing partial ever stands under a final name: blobs are
written to temporary files and renamed, and a manifest is installed only
after all of its blobs. Free space is checked before the first byte is
written. A second run with the same inputs copies nothing. Concurrent runs
on one DEST wait for each other.

This is the ExecStartPre= command of ollama.service: after a reboot the RAM
disk is empty and is refilled before Ollama starts."""

POPULATE_EPILOG = f"""\
output (--json keys):
  changed, copied, linked, fallback, pruned, ram_only, written_back (lists),
  skipped (count), bytes_copied, seconds, dry_run. Progress goes to stderr: a live
  line on a terminal, a line per blob and a summary otherwise (journald).

examples:
  {PROG} populate --source /usr/share/ollama/.ollama/models --dest /mnt/ollama/models \\
      --owner ollama:ollama --verify llama3.2:3b mistral:7b
  {PROG} populate --config /etc/ollama-ramdisk/config.json
  {PROG} populate --config /etc/ollama-ramdisk/config.json --prune --dry-run --json

{EXIT_STATUS}"""

WRITEBACK_DESCRIPTION = """\
Copy every model that exists only in the RAM disk (made there by `ollama
pull`, `create` or `cp`) back to the disk store, so that a reboot does not
lose it: the blobs the disk store lacks, then the manifest.

The RAM disk is written by any client of Ollama's API, so nothing in it is
trusted: no link below its root is followed, only regular files with
Ollama's names are read, and everything is written into --source only, with
populate's rules (temporary file, rename, manifest last, space checked
first, --verify hashing while copying). A --reserve stays free on the disk
store: a model that would cross it is not written back and is reported.

Each model written back is added to a record in the disk store
(ollama-ramdisk-written-back.json), and populate keeps recorded models in
the RAM disk as cold ones, so that they stay in `ollama list` after a
reboot. A recorded model pulled again in RAM is written back again. A model
removed from the RAM disk is never removed from the disk store;
--forget-removed only drops it from the record."""

WRITEBACK_EPILOG = f"""\
output (--json keys):
  changed, written (models), copied (blobs), bytes_copied, skipped (blobs
  the disk store had), refused (models not written back), forgotten (models
  dropped from the record), seconds, dry_run.

examples:
  {PROG} writeback --source /usr/share/ollama/.ollama/models --dest /mnt/ollama/models
  {PROG} writeback --config /etc/ollama-ramdisk/config.json --verify --json

{EXIT_STATUS}"""

PRELOAD_DESCRIPTION = """\
Load models into the running Ollama through its API, so that the first
request after a start pays no load. Waits (bounded) for the API to answer,
then loads each model in turn with KEEP_ALIVE, retrying a failed load a few
times, never forever, and prints a line per model: loaded, with the time it
took, or not, with Ollama's error."""

PRELOAD_EPILOG = f"""\
output (--json keys): changed, loaded (models), already_loaded (left alone
  with --skip-loaded), failed (model -> Ollama's error), seconds, dry_run.

examples:
  {PROG} preload --keep-alive -1 llama3.1:8b qwen2.5:7b
  {PROG} preload --config /etc/ollama-ramdisk/config.json   # keys preload, keep_alive, ollama_host

exit status: 0 every model loaded; 1 a model or the API failed; 2 invalid input."""

VERIFY_EXIT_STATUS = _exit_status(
    "a blob is corrupt or missing and was not\n     repaired, or an I/O error"
)

VERIFY_DESCRIPTION = """\
Hash every blob of the named models (all models if none) against its digest.

A blob's name is the sha256 of its content: a blob whose content hashes to
anything else is corrupt. Missing blobs and manifests are reported too. With
--repair, each corrupt or missing blob is copied again from the source store
(atomically, as populate does) and checked once more."""

VERIFY_EPILOG = f"""\
output (--json keys):
  ok, checked, bytes, corrupt, missing, repaired, models.

examples:
  {PROG} verify --store /mnt/ollama/models
  {PROG} verify --store /mnt/ollama/models llama3.1:70b --jobs 2
  {PROG} verify --config /etc/ollama-ramdisk/config.json --repair

{VERIFY_EXIT_STATUS}"""

STATUS_DESCRIPTION = """\
Show what a store holds: each model with its size and residency, and the
size and use of the file system it lives on.

Residency: "ram" when every blob is a regular file in the store, "linked"
when every blob is there and at least one is a link to the disk store (a
cold model), "partial" when a blob is missing, a link dangles, a size
disagrees with the manifest or the manifest is unreadable. Nothing is
hashed: use verify for that. Given --source (or "source" in --config), the
models that exist only in the store (pulled into RAM, lost at reboot) are
listed as ram_only."""

STATUS_EPILOG = f"""\
output (--json keys):
  store, models (name, bytes, residency, blobs, linked, missing), mount
  (path, fstype, size_bytes, used_bytes, available_bytes), ram_only,
  collect_seconds; with --ollama-host, ollama (url, up, error, loaded: name,
  size_bytes, vram_bytes, expires_in, never_expires); with --state-dir,
  last_runs (populate, writeback, verify: finished_at, seconds, exit_code, ok,
  error, counts).
  --prometheus FILE writes node_exporter textfile metrics atomically, every
  series labelled by store: ollama_ramdisk_size_bytes, _used_bytes,
  _available_bytes, _models, _model_bytes{{model}},
  _model_resident{{model,residency}}, _ram_only_models, _ram_only_model{{model}};
  with --ollama-host _ollama_up, _ollama_loaded_models,
  _ollama_model_size_bytes{{model}}, _ollama_model_vram_bytes{{model}},
  _ollama_model_expiry_seconds{{model}}; with --state-dir
  _last_run_timestamp_seconds{{command}}, _last_run_duration_seconds{{command}},
  _last_run_success{{command}} and the counts of each run (_last_refill_*,
  _last_writeback_*, _last_verify_*); and _collect_duration_seconds.

examples:
  {PROG} status --store /mnt/ollama/models
  {PROG} status --config /etc/ollama-ramdisk/config.json --json
  {PROG} status --config /etc/ollama-ramdisk/config.json --ollama-host 127.0.0.1:11434 \\
      --prometheus /var/lib/prometheus/node-exporter/ollama_ramdisk.prom

{EXIT_STATUS}"""


class UsageError(InvalidOption):
    """A command line argparse refused; carries the usage line to show with it."""

    def __init__(self, usage: str, message: str) -> None:
        self.usage = usage
        super().__init__(message)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        # Raised, not printed: main() reports it like every other error (exit 2).
        raise UsageError(self.format_usage(), message)


def _converter(check: Callable[[object], Any], metavar: str) -> Callable[[str], Any]:
    """An argparse type from a config check, so both sources reject alike."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = metavar
    return convert


def _headroom(text: str) -> float:
    try:
        return check_headroom(text)
    except InvalidOption as error:
        raise argparse.ArgumentTypeError(str(error).replace("headroom: ", "", 1)) from None


SIZE = _converter(to_size, "SIZE")
PATH = _converter(to_path, "DIR")
COUNT = _converter(to_count, "N")
SECONDS = _converter(to_number, "SECONDS")
TEXT = _converter(to_text, "TEXT")


def _add_common(parser: argparse.ArgumentParser, progress: bool) -> None:
    # SUPPRESS: accepted before or after the command without one hiding the other.
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=PATH,
        default=argparse.SUPPRESS,
        help="read options from FILE (JSON, or YAML with PyYAML); the command line wins",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the result as one JSON object on stdout",
    )
    if progress:
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="no progress lines on stderr (warnings and errors still)",
        )


def _flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    """--NAME / --no-NAME, unset by default so that the config file can decide."""
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=help_text)


def _add_models(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", default=None, help=what)


def _add_owner(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--owner",
        type=TEXT,
        metavar="USER[:GROUP]",
        help="owner of what is created (directories 0755, files 0644)",
    )


def _add_lock_timeout(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for another run on {where} (default 600)",
    )


def _add_state_dir(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--state-dir", metavar="DIR", type=PATH, help=what)


def _report_to(parser: argparse.ArgumentParser) -> None:
    _add_state_dir(
        parser,
        "keep how this run ended in DIR/last-COMMAND.json, for status --state-dir (the metrics)",
    )


def _add_cold(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cold",
        action="append",
        metavar="MODEL",
        default=None,
        help="a model visible to Ollama but served from the disk store, its blobs "
        "linked, not copied (repeatable; replaces the config's list)",
    )


def _command(
    commands: Any, name: str, summary: str, *, description: str, epilog: str, progress: bool
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, progress)
    return parser


def _plan_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "plan",
        "size a RAM disk for a model set",
        description=PLAN_DESCRIPTION,
        epilog=PLAN_EPILOG,
        progress=False,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (OLLAMA_MODELS)")
    parser.add_argument(
        "--headroom",
        type=_headroom,
        metavar="RATIO",
        help=f"size = model bytes x RATIO, at least 1.0 (default {DEFAULT_HEADROOM})",
    )
    parser.add_argument(
        "--reserve",
        type=SIZE,
        metavar="SIZE",
        help="memory to leave free (default: the larger of 4g and 10%% of memory)",
    )
    parser.add_argument(
        "--size",
        type=SIZE,
        metavar="SIZE",
        help="force the RAM disk's size instead of sizing it from the models",
    )
    parser.add_argument(
        "--mem-total",
        type=SIZE,
        metavar="SIZE",
        help="plan for a host with this much memory (default: this host's, or its cgroup limit)",
    )
    _flag(parser, "gpus", "plan for a host with GPUs, or without (default: look for them)")
    parser.add_argument(
        "--unit", type=TEXT, metavar="UNIT",
        help="also fit under this unit's and its slices' MemoryMax= and MemoryHigh= (systemd)",
    )  # fmt: skip
    parser.add_argument(
        "--unit-memory-max", type=SIZE, metavar="SIZE",
        help="the unit's MemoryMax, for another host (instead of asking systemd)",
    )  # fmt: skip
    parser.add_argument(
        "--unit-memory-high", type=SIZE, metavar="SIZE",
        help="the unit's MemoryHigh, for another host (instead of asking systemd)",
    )  # fmt: skip
    parser.add_argument(
        "--unit-cgroup", type=PATH, metavar="DIR",
        help="read the limits from this cgroup (v2) directory and its parents instead",
    )  # fmt: skip
    _add_cold(parser)
    _add_models(parser, "hot model to hold in RAM")


def _populate_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "populate",
        "copy a model set into the RAM disk",
        description=POPULATE_DESCRIPTION,
        epilog=POPULATE_EPILOG,
        progress=True,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (OLLAMA_MODELS)")
    parser.add_argument("--dest", metavar="DIR", type=PATH, help="the store in the RAM disk")
    _add_cold(parser)
    _flag(parser, "verify", "hash each blob while copying; a mismatch is not installed")
    _flag(
        parser,
        "prune",
        "remove models not in the set and blobs no manifest uses (never a model "
        "that exists only in DEST: it is reported as ram_only and kept)",
    )
    _flag(parser, "dry-run", "report what would be done, change nothing")
    _add_owner(parser)
    parser.add_argument(
        "--jobs", type=COUNT, metavar="N",
        help=f"copy N blobs in parallel (default: one per CPU, at most {MAX_DEFAULT_JOBS}:"
        f" {default_jobs()} here)",
    )  # fmt: skip
    _flag(
        parser,
        "fallback-link",
        "link a hot blob that cannot be copied (no space, read error, hash "
        "mismatch) to the source instead, and still succeed (for ExecStartPre=)",
    )
    _add_lock_timeout(parser, "the same DEST")
    _report_to(parser)
    _add_models(parser, "hot model to copy into RAM")


def _verify_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "verify",
        "check every blob against its digest",
        description=VERIFY_DESCRIPTION,
        epilog=VERIFY_EPILOG,
        progress=True,
    )
    parser.add_argument("--store", metavar="DIR", type=PATH, help="the store to check")
    _flag(parser, "repair", "copy corrupt or missing blobs again from --source")
    parser.add_argument(
        "--source", metavar="DIR", type=PATH, help="the disk store to repair from (with --repair)"
    )
    parser.add_argument("--jobs", type=COUNT, metavar="N", help="hash N blobs in parallel")
    _report_to(parser)
    _add_models(parser, "model to check (default: every model in the store)")


def _status_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "status",
        "show models, residency and use of a store",
        description=STATUS_DESCRIPTION,
        epilog=STATUS_EPILOG,
        progress=False,
    )
    parser.add_argument("--store", metavar="DIR", type=PATH, help="the store to show")
    parser.add_argument(
        "--source",
        metavar="DIR",
        type=PATH,
        help="the disk store, to list the models that exist only in --store",
    )
    parser.add_argument(
        "--prometheus",
        metavar="FILE",
        type=PATH,
        help="also write node_exporter textfile metrics to FILE (atomically)",
    )
    parser.add_argument(
        "--ollama-host", type=TEXT, metavar="HOST[:PORT]",
        help="also show what this Ollama has loaded (/api/ps; OLLAMA_HOST's form)",
    )  # fmt: skip
    _add_state_dir(parser, "also show how the last populate, writeback and verify ended")


def _writeback_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "writeback",
        "copy models made in the RAM disk back to the disk store",
        description=WRITEBACK_DESCRIPTION,
        epilog=WRITEBACK_EPILOG,
        progress=True,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (written)")
    parser.add_argument("--dest", metavar="DIR", type=PATH, help="the store in the RAM disk")
    _flag(parser, "verify", "hash each blob while copying; a mismatch is not written")
    _flag(parser, "dry-run", "report what would be written, change nothing")
    _add_owner(parser)
    parser.add_argument(
        "--reserve",
        type=SIZE,
        metavar="SIZE",
        help="keep this much free on the disk store (default 1g)",
    )
    parser.add_argument(
        "--forget-removed",
        action="store_true",
        help="drop recorded models the RAM disk no longer has from the record (never from the"
        " disk store); only while Ollama runs on a RAM disk populate completed",
    )
    _add_lock_timeout(parser, "either store")
    _report_to(parser)


def _preload_parser(commands: Any) -> None:
    parser = _command(
        commands,
        "preload",
        "load models into the running Ollama",
        description=PRELOAD_DESCRIPTION,
        epilog=PRELOAD_EPILOG,
        progress=False,
    )
    parser.add_argument(
        "--host", dest="ollama_host", type=TEXT, metavar="HOST[:PORT]",
        help="Ollama's address, as OLLAMA_HOST says it (default 127.0.0.1:11434)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-alive", type=TEXT, metavar="DURATION",
        help="how long Ollama keeps each model: seconds or a Go duration; -1 for ever (default)",
    )  # fmt: skip
    parser.add_argument(
        "--wait", type=SECONDS, metavar="SECONDS", help="how long to wait for the API (default 120)"
    )
    parser.add_argument(
        "--retries", type=COUNT, metavar="N", help="loads tried per model (default 3)"
    )
    parser.add_argument(
        "--load-timeout", type=SECONDS, metavar="SECONDS",
        help="longest one load may take (default 600)",
    )  # fmt: skip
    _flag(parser, "skip-loaded", "leave alone the models Ollama has loaded already")
    _flag(parser, "dry-run", "say which models would be loaded, load none")
    _add_models(parser, "model to load")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=MAIN_DESCRIPTION,
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_common(parser, progress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _plan_parser(commands)
    _populate_parser(commands)
    _verify_parser(commands)
    _status_parser(commands)
    _writeback_parser(commands)
    _preload_parser(commands)
    return parser


# ---------------------------------------------------------------- options


class Options:
    """A command's options: the command line first, then the config file."""

    def __init__(self, args: argparse.Namespace, config: Mapping[str, Any]) -> None:
        self.args = args
        self.config = config
        # The result the command emitted, for its run report (runreport.py).
        self.outcome: Mapping[str, Any] | None = None

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self.args, key, None)
        if value is not None and value != []:
            return value
        return self.config.get(key, default)

    def require(self, key: str, *fallbacks: str) -> Any:
        for candidate in (key, *fallbacks):
            value = self.get(candidate)
            if value is not None:
                return value
        option = "--" + key.replace("_", "-")
        raise InvalidOption(f"{option} is required (or {key!r} in --config)")

    def given(self, *keys: str) -> dict[str, Any]:
        """The keys that were set somewhere, for calls whose defaults live in the core."""
        return {key: self.get(key) for key in keys if self.get(key) is not None}

    @property
    def json(self) -> bool:
        return bool(self.get("json", False))

    @property
    def quiet(self) -> bool:
        return bool(self.get("quiet", False))


def _emit(options: Options, result: Mapping[str, Any], lines: Sequence[str]) -> None:
    options.outcome = result
    if options.json:
        print(json.dumps(result, indent=2))
    else:
        for line in lines:
            print(line)


def _warn(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _existing_store(path: Path, option: str) -> Store:
    store = Store(path)
    store.require_directory(option)
    return store


# ---------------------------------------------------------------- plan


def _run_plan(options: Options) -> int:
    source = _existing_store(options.require("source"), "--source")
    hot = to_names(options.get("models", []))
    cold = to_names(options.get("cold", []))
    if not hot and not cold:
        raise InvalidOption("no models to plan: name them as arguments or as 'models' in --config")
    headroom = check_headroom(options.get("headroom", DEFAULT_HEADROOM))
    model_set = resolve_model_set(source, hot, cold)
    plan = build_plan(
        model_set,
        headroom,
        reserve=options.get("reserve"),
        mem_total=options.get("mem_total"),
        size_override=options.get("size"),
        gpus=options.get("gpus"),
        unit_limits=service_limits(
            options.get("unit"),
            memory_max=options.get("unit_memory_max"),
            memory_high=options.get("unit_memory_high"),
            cgroup=options.get("unit_cgroup"),
        ),
    )
    _emit(options, plan.to_dict(), _plan_lines(plan))
    if not plan.holds_set:
        _warn(
            f"warning: the forced size {plan.size} is below the {human(plan.tmpfs_bytes)} "
            "the hot models need; what does not fit must be linked (--fallback-link)"
        )
    for warning in plan.warnings():
        _warn(f"warning: {warning}")
    for refusal in plan.refusals():
        _warn(refusal)
    return EXIT_OK if plan.fits else EXIT_FAILED


def _plan_lines(plan: Plan) -> list[str]:
    lines = [f"hot models ({len(plan.model_set.hot)}):"]
    width = max((len(manifest.name.short) for manifest in plan.model_set.manifests), default=0)
    for manifest in plan.model_set.hot:
        size = human(manifest.blob_bytes + len(manifest.raw))
        lines.append(f"  {manifest.name.short:<{width}}  {size:>10}  {len(manifest.blobs)} blobs")
    if plan.model_set.cold:
        lines.append(
            f"cold models ({len(plan.model_set.cold)}), linked to the source, not counted:"
        )
        lines += [f"  {manifest.name.short}" for manifest in plan.model_set.cold]
    available = plan.mem_total - plan.reserve
    forced = " (forced)" if plan.size_override else f" at headroom {plan.headroom:g}"
    lines += [
        f"distinct blobs  {plan.blob_count}",
        f"bytes           {human(plan.bytes)} ({plan.bytes})",
        f"tmpfs bytes     {human(plan.tmpfs_bytes)} ({plan.tmpfs_bytes}, whole pages)",
        f"size            {plan.size}{forced} ({plan.size_bytes})",
        f"memory          {human(plan.mem_total)}, reserve {human(plan.reserve)}: "
        f"{human(max(available, 0))} available",
        f"loads           {'map the weights' if plan.load.mmap else 'copy the weights'}"
        f" ({plan.load.reason})",
        f"a load adds     {human(plan.load.copy_bytes)}",
        *(
            f"limit           {limit.source}: {human(limit.bytes)}, needs {human(limit.needed)}"
            f"{'' if limit.fits else ' (over)'}"
            for limit in plan.limits
        ),
        f"fits            {'yes' if plan.fits else 'NO'} (tightest: {plan.tightest.source})",
    ]
    return lines


# ---------------------------------------------------------------- populate


def _run_populate(options: Options) -> int:
    source, dest = options.require("source"), options.require("dest")
    hot = to_names(options.get("models", []))
    cold = to_names(options.get("cold", []))
    # Every bad name at once, before anything under DEST can be created.
    parse_names([*hot, *cold])

    # Imported here: plan and status keep working, and start fast, without them.
    from .populate import PopulateOptions, populate  # noqa: PLC0415
    from .progress import make_reporter  # noqa: PLC0415

    settings = PopulateOptions(
        source=source,
        dest=dest,
        models=hot,
        cold=cold,
        **options.given("verify", "prune", "dry_run", "owner", "jobs", "fallback_link"),
        **options.given("lock_timeout"),
    )
    reporter = make_reporter(sys.stderr, quiet=options.quiet)
    outcome = populate(settings, reporter=reporter).to_dict()
    # The reporter already told a real run's files, fallbacks and summary on stderr.
    told = not options.quiet and not outcome.get("dry_run")
    _emit(options, outcome, _populate_lines(outcome, told))
    return EXIT_OK


def _run_writeback(options: Options) -> int:
    from .progress import make_reporter  # noqa: PLC0415
    from .writeback import WritebackOptions, writeback  # noqa: PLC0415

    settings = WritebackOptions(
        source=options.require("source"),
        dest=options.require("dest"),
        **options.given("verify", "dry_run", "owner", "lock_timeout"),
        forget_removed=bool(options.args.forget_removed),
    )
    # The config file is populate's: there "reserve" is the plan's memory reserve.
    reserve = options.args.reserve
    if reserve is None:
        reserve = options.config.get("writeback_reserve")
    if reserve is not None:
        settings.reserve = reserve
    reporter = make_reporter(sys.stderr, quiet=options.quiet)
    outcome = writeback(settings, reporter=reporter).to_dict()
    verb = "would write back" if outcome["dry_run"] else "wrote back"
    lines = [f"{verb} {model}" for model in outcome["written"]] or ["nothing to write back"]
    lines += [f"forgot {model} (removed in RAM, kept on disk)" for model in outcome["forgotten"]]
    _emit(options, outcome, lines)
    return EXIT_OK


def _run_preload(options: Options) -> int:
    from .preload import preload  # noqa: PLC0415

    models = to_names(options.args.models or options.config.get("preload", []))
    settings = {
        "host": options.get("ollama_host"),
        "keep_alive": options.get("keep_alive"),
        "wait": options.get("wait"),
        "retries": options.get("retries"),
        "load_timeout": options.get("load_timeout"),
        "skip_loaded": options.get("skip_loaded"),
        "dry_run": options.get("dry_run"),
    }
    result = preload(
        models,
        **{key: value for key, value in settings.items() if value is not None},
        log=_warn,
    )
    outcome = result.to_dict()
    verb = "would preload" if result.dry_run else "preloaded"
    lines = [f"{verb} {len(result.loaded)} of {len(models)} model(s)"]
    if result.already_loaded:
        lines.append(f"already loaded: {', '.join(result.already_loaded)}")
    _emit(options, outcome, lines)
    return EXIT_FAILED if result.failed else EXIT_OK


def _blobs(count: int) -> str:
    return f"{count} blob" if count == 1 else f"{count} blobs"


def _populate_lines(outcome: Mapping[str, Any], told: bool) -> list[str]:
    lines: list[str] = []
    if not told:
        copied, linked = len(outcome["copied"]), len(outcome["linked"])
        volume, skipped = human(outcome["bytes_copied"]), outcome["skipped"]
        fallback = len(outcome.get("fallback", []))
        if outcome.get("dry_run"):
            lines.append(
                f"would copy {_blobs(copied)} ({volume}), link {linked}, "
                f"fall back to links for {fallback}; {skipped} in place"
            )
            verb = "would prune"
        else:
            lines.append(
                f"copied {_blobs(copied)} ({volume}) in {outcome['seconds']:.1f} s, "
                f"linked {linked}, fell back to links for {fallback}; {skipped} already in place"
            )
            verb = "pruned"
        lines += [f"{verb} {relpath}" for relpath in outcome.get("pruned", [])]
    lines += [
        f"kept {name}: it exists only in the RAM disk, not in the source"
        for name in outcome.get("ram_only", [])
    ]
    lines += [
        f"kept {name} as cold: written back from the RAM disk earlier"
        for name in outcome.get("written_back", [])
    ]
    if not outcome.get("changed"):
        lines.append("nothing to change: the RAM disk already holds the set")
    return lines


# ---------------------------------------------------------------- verify


def _run_verify(options: Options) -> int:
    store = _existing_store(options.require("store", "dest"), "--store")
    source = None
    if options.get("repair", False):
        source_path = options.get("source")
        if source_path is None:
            raise InvalidOption("--repair needs --source (the disk store to copy blobs from)")
        source = _existing_store(source_path, "--source")

    from .progress import make_reporter  # noqa: PLC0415
    from .verify import verify_store  # noqa: PLC0415

    result = verify_store(
        store,
        to_names(options.get("models", [])),
        repair_source=source,
        reporter=make_reporter(sys.stderr, quiet=options.quiet),
        **options.given("jobs"),
    )
    outcome = result.to_dict()
    # Unless quiet, the reporter already told each bad blob and the summary on stderr.
    _emit(options, outcome, _verify_lines(outcome) if options.quiet else [])
    return EXIT_OK if outcome["ok"] else EXIT_FAILED


def _verify_lines(outcome: Mapping[str, Any]) -> list[str]:
    lines = [
        f"checked {_blobs(outcome['checked'])} ({human(outcome['bytes'])}): "
        + ("ok" if outcome["ok"] else "PROBLEMS FOUND")
    ]
    lines += [f"corrupt   {relpath}" for relpath in outcome.get("corrupt", [])]
    lines += [f"missing   {relpath}" for relpath in outcome.get("missing", [])]
    lines += [f"repaired  {relpath}" for relpath in outcome.get("repaired", [])]
    return lines


# ---------------------------------------------------------------- status


def _run_status(options: Options) -> int:
    from .status_report import collect, status_lines, write_textfile  # noqa: PLC0415

    store = _existing_store(options.require("store", "dest"), "--store")
    source_path = options.get("source")
    source = _existing_store(source_path, "--source") if source_path is not None else None
    collected = collect(
        store,
        source=source,
        ollama_host=options.get("ollama_host"),
        state_dir=options.get("state_dir"),
        warn=_warn,
    )
    prometheus = options.get("prometheus")
    if prometheus is not None:
        write_textfile(collected, prometheus)
    outcome = collected.to_dict()
    _emit(options, outcome, status_lines(outcome))
    return EXIT_OK


# ---------------------------------------------------------------- main

COMMANDS: dict[str, Callable[[Options], int]] = {
    "plan": _run_plan,
    "populate": _run_populate,
    "verify": _run_verify,
    "status": _run_status,
    "writeback": _run_writeback,
    "preload": _run_preload,
}


def _report_error(message: str, code: int, as_json: bool, problems: Sequence[str] = ()) -> None:
    """Each problem on its own stderr line; with --json, also one JSON object on stdout."""
    for line in message.splitlines() or [message]:
        print(f"{PROG}: error: {line}", file=sys.stderr)
    if as_json:
        document = {"error": message, "problems": list(problems) or [message], "exit_code": code}
        print(json.dumps(document, indent=2))


def _os_error_message(error: OSError) -> str:
    paths = [str(path) for path in (error.filename, error.filename2) if path is not None]
    reason = error.strerror or str(error)
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _run_reported(command: str, options: Options) -> int:
    """Run a command; with a state directory, keep how a real run of populate,
    writeback or verify ended (success or not) for the metrics."""
    state_dir = options.get("state_dir")
    if command not in REPORTED_COMMANDS or state_dir is None or options.get("dry_run"):
        return COMMANDS[command](options)
    started = time.monotonic()
    code, error = EXIT_FAILED, None
    try:
        code = COMMANDS[command](options)
    except RamdiskError as failure:
        code, error = failure.exit_code, str(failure)
        raise
    except OSError as failure:
        code, error = EXIT_FAILED, _os_error_message(failure)
        raise
    except KeyboardInterrupt:
        code, error = EXIT_INTERRUPTED, "interrupted"
        raise
    finally:
        report = make_report(
            command,
            seconds=time.monotonic() - started,
            exit_code=code,
            outcome=options.outcome,
            error=error,
        )
        write_report(state_dir, report, _warn)
    return code


def _terminate(_signum: int, _frame: object) -> None:
    """SIGTERM ends a run as Ctrl-C does: workers stop, temporary files go."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, 1 or 2)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    arguments = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in arguments
    try:
        args = build_parser().parse_args(arguments)
        config = load_config(args.config) if getattr(args, "config", None) else {}
        options = Options(args, config)
        as_json = options.json
        return _run_reported(args.command, options)
    except SystemExit as exit_:
        # --help and --version end here with status 0.
        return exit_.code if isinstance(exit_.code, int) else EXIT_INVALID
    except UsageError as error:
        sys.stderr.write(error.usage)
        _report_error(str(error), EXIT_INVALID, as_json)
        return EXIT_INVALID
    except RamdiskError as error:
        problems = [str(problem) for problem in getattr(error, "problems", [])]
        _report_error(str(error), error.exit_code, as_json, problems)
        return error.exit_code
    except OSError as error:
        _report_error(_os_error_message(error), EXIT_FAILED, as_json)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _report_error("interrupted", EXIT_INTERRUPTED, as_json)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
