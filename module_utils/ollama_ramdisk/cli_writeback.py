"""writeback: copy models made in the RAM disk back to the disk store."""

from __future__ import annotations

import sys
from typing import Any

from .cli_common import (
    EXIT_STATUS,
    PATH,
    PROG,
    SIZE,
    Options,
    add_command,
    add_flag,
    add_lock_timeout,
    add_owner,
    add_report_to,
    emit,
)
from .defaults import WRITEBACK_RESERVE
from .errors import EXIT_OK

WRITEBACK_DESCRIPTION = """\
Copy every model that exists only in the RAM disk (made there by `ollama
pull`, `create` or `cp`) back to the disk store, so that a reboot does not
lose it: the blobs the disk store lacks, then the manifest.

The RAM disk is written by any client of Ollama's API, so nothing in it is
trusted: no link below its root is followed, only regular files with
Ollama's names are read, and everything is written into --source only, with
populate's rules (temporary file, rename, manifest last, space checked
first). Every blob is hashed while it is copied, --verify or not: one that
does not hash to its name is not written, nor is its model. A blob the disk
store has is never replaced: a model whose manifest gives it another size is
refused (unless the disk's copy is corrupt). A --reserve stays free on the
disk store: a model that would cross it is not written back and is reported.

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


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "writeback",
        "copy models made in the RAM disk back to the disk store",
        description=WRITEBACK_DESCRIPTION,
        epilog=WRITEBACK_EPILOG,
        progress=True,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (written)")
    parser.add_argument("--dest", metavar="DIR", type=PATH, help="the store in the RAM disk")
    add_flag(parser, "verify", "kept for configs that set it: blobs are always hashed")
    add_flag(parser, "dry-run", "report what would be written, change nothing")
    add_owner(parser)
    parser.add_argument(
        "--reserve",
        type=SIZE,
        metavar="SIZE",
        help=f"keep this much free on the disk store (default {WRITEBACK_RESERVE})",
    )
    parser.add_argument(
        "--forget-removed",
        action="store_true",
        help="drop recorded models the RAM disk no longer has from the record (never from the"
        " disk store); only while Ollama runs on a RAM disk populate completed",
    )
    add_lock_timeout(parser, "either store")
    add_report_to(parser)


def run(options: Options) -> int:
    from .progress import make_reporter  # noqa: PLC0415
    from .writeback import WritebackOptions, writeback  # noqa: PLC0415

    settings = WritebackOptions(
        source=options.require("source"),
        dest=options.require("dest"),
        **options.set_values("verify", "dry_run", "owner", "lock_timeout"),
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
    emit(options, outcome, lines)
    return EXIT_OK
