"""verify: check every blob of a store against its digest."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .cli_common import (
    COUNT,
    PATH,
    PROG,
    Options,
    add_command,
    add_flag,
    add_models,
    add_report_to,
    blobs_text,
    emit,
    existing_store,
    exit_status_text,
)
from .config import to_names
from .errors import EXIT_FAILED, EXIT_OK, InvalidOption
from .sizes import human

VERIFY_EXIT_STATUS = exit_status_text(
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


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "verify",
        "check every blob against its digest",
        description=VERIFY_DESCRIPTION,
        epilog=VERIFY_EPILOG,
        progress=True,
    )
    parser.add_argument("--store", metavar="DIR", type=PATH, help="the store to check")
    add_flag(parser, "repair", "copy corrupt or missing blobs again from --source")
    parser.add_argument(
        "--source", metavar="DIR", type=PATH, help="the disk store to repair from (with --repair)"
    )
    parser.add_argument("--jobs", type=COUNT, metavar="N", help="hash N blobs in parallel")
    add_report_to(parser)
    add_models(parser, "model to check (default: every model in the store)")


def run(options: Options) -> int:
    store = existing_store(options.require("store", "dest"), "--store")
    source = None
    if options.get("repair", False):
        source_path = options.get("source")
        if source_path is None:
            raise InvalidOption("--repair needs --source (the disk store to copy blobs from)")
        source = existing_store(source_path, "--source")

    from .progress import make_reporter  # noqa: PLC0415
    from .verify import verify_store  # noqa: PLC0415

    result = verify_store(
        store,
        to_names(options.get("models", [])),
        repair_source=source,
        reporter=make_reporter(sys.stderr, quiet=options.quiet),
        **options.set_values("jobs"),
    )
    outcome = result.to_dict()
    # Unless quiet, the reporter already progress_shown each bad blob and the summary on stderr.
    emit(options, outcome, verify_lines(outcome) if options.quiet else [])
    return EXIT_OK if outcome["ok"] else EXIT_FAILED


def verify_lines(outcome: Mapping[str, Any]) -> list[str]:
    lines = [
        f"checked {blobs_text(outcome['checked'])} ({human(outcome['bytes'])}): "
        + ("ok" if outcome["ok"] else "PROBLEMS FOUND")
    ]
    lines += [f"corrupt   {relpath}" for relpath in outcome.get("corrupt", [])]
    lines += [f"missing   {relpath}" for relpath in outcome.get("missing", [])]
    lines += [f"repaired  {relpath}" for relpath in outcome.get("repaired", [])]
    return lines
