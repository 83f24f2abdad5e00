"""populate: copy a model set into the RAM disk."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .cli_common import (
    COUNT,
    EXIT_STATUS,
    PATH,
    PROG,
    Options,
    add_cold,
    add_command,
    add_flag,
    add_lock_timeout,
    add_models,
    add_owner,
    add_report_to,
    blobs_text,
    emit,
)
from .config import to_names
from .defaults import MAX_JOBS
from .errors import EXIT_OK
from .names import parse_names
from .safeio import default_jobs
from .sizes import human

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


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "populate",
        "copy a model set into the RAM disk",
        description=POPULATE_DESCRIPTION,
        epilog=POPULATE_EPILOG,
        progress=True,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (OLLAMA_MODELS)")
    parser.add_argument("--dest", metavar="DIR", type=PATH, help="the store in the RAM disk")
    add_cold(parser)
    add_flag(parser, "verify", "hash each blob while copying; a mismatch is not installed")
    add_flag(
        parser,
        "prune",
        "remove models not in the set and blobs no manifest uses (never a model "
        "that exists only in DEST: it is reported as ram_only and kept)",
    )
    add_flag(parser, "dry-run", "report what would be done, change nothing")
    add_owner(parser)
    parser.add_argument(
        "--jobs", type=COUNT, metavar="N",
        help=f"copy N blobs in parallel (default: one per CPU, at most {MAX_JOBS}:"
        f" {default_jobs()} here)",
    )  # fmt: skip
    add_flag(
        parser,
        "fallback-link",
        "link a hot blob that cannot be copied (no space, read error, hash "
        "mismatch) to the source instead, and still succeed (for ExecStartPre=)",
    )
    add_lock_timeout(parser, "the same DEST")
    add_report_to(parser)
    add_models(parser, "hot model to copy into RAM")


def run(options: Options) -> int:
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
        **options.set_values("verify", "prune", "dry_run", "owner", "jobs", "fallback_link"),
        **options.set_values("lock_timeout"),
    )
    reporter = make_reporter(sys.stderr, quiet=options.quiet)
    outcome = populate(settings, reporter=reporter).to_dict()
    # The reporter already told a real run's files, fallbacks and summary on stderr.
    progress_shown = not options.quiet and not outcome.get("dry_run")
    emit(options, outcome, populate_lines(outcome, progress_shown))
    return EXIT_OK


def populate_lines(outcome: Mapping[str, Any], progress_shown: bool) -> list[str]:
    lines: list[str] = []
    if not progress_shown:
        copied, linked = len(outcome["copied"]), len(outcome["linked"])
        volume, skipped = human(outcome["bytes_copied"]), outcome["skipped"]
        fallback = len(outcome.get("fallback", []))
        if outcome.get("dry_run"):
            lines.append(
                f"would copy {blobs_text(copied)} ({volume}), link {linked}, "
                f"fall back to links for {fallback}; {skipped} in place"
            )
            verb = "would prune"
        else:
            lines.append(
                f"copied {blobs_text(copied)} ({volume}) in {outcome['seconds']:.1f} s, "
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
