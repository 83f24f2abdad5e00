"""pull: make the named models present in the disk store, through a mirror or not."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli_common import (
    PATH,
    PROG,
    SIZE,
    TEXT,
    Options,
    add_command,
    add_flag,
    add_models,
    add_owner,
    emit,
    exit_status_text,
)
from .defaults import WRITEBACK_RESERVE
from .errors import EXIT_OK
from .sizes import human

PULL_DESCRIPTION = """\
Pull every MODEL the disk store lacks (no manifest, or a blob missing), by
the host's own Ollama: a private `ollama serve` on a loopback port whose
OLLAMA_MODELS is the disk store, run as the store's owner, which never
prunes. The running ollama.service and its RAM disk are not touched.

Before anything is fetched, the registry's manifest of every missing model
is read: a model that cannot be pulled (no such tag, registry down) or a
set that would leave less than --reserve free on the disk store fails the
run at once, naming the model, the registry and the reason. Ollama checks
each blob's sha256 as it lands; every pulled model is hashed once more
before it counts as present.

With --mirror HOST:PORT, models of registry.ollama.ai are pulled from that
OCI registry as HOST:PORT/namespace/model:tag, then named as asked (`ollama
cp`; blobs are shared, nothing is copied) and the mirror's name removed."""

PULL_FAILURES = exit_status_text(
    "a model cannot be pulled (no such tag, registry\n"
    "     unreachable, digest mismatch), too little space"
)

PULL_EPILOG = f"""\
output (--json keys):
  changed, pulled (each: name, registry, bytes, fetch_bytes; after a real
  pull also fetched_bytes, seconds, rate), present (models the store had),
  bytes_fetched, seconds, dry_run.

examples:
  {PROG} pull --source /usr/share/ollama/.ollama/models llama3.1:8b qwen2.5:7b
  {PROG} pull --source /var/lib/ollama --mirror mirror.example:5000 --insecure llama3.1:8b
  {PROG} pull --config /etc/ollama-ramdisk/config.json --dry-run

{PULL_FAILURES}"""


def add_mirror_options(parser: argparse.ArgumentParser) -> None:
    """--mirror, --insecure and --ca-file: the options pull and push share."""
    parser.add_argument("--mirror", metavar="HOST:PORT", type=TEXT, help="the fleet's OCI registry")
    add_flag(parser, "insecure", "speak plain HTTP to the mirror")
    parser.add_argument(
        "--ca-file",
        metavar="FILE",
        type=PATH,
        help="CA bundle that signed the mirror's certificate",
    )


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "pull",
        "pull the models the disk store lacks (from a fleet mirror or their registry)",
        description=PULL_DESCRIPTION,
        epilog=PULL_EPILOG,
        progress=True,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (written)")
    add_mirror_options(parser)
    parser.add_argument(
        "--reserve",
        type=SIZE,
        metavar="SIZE",
        help=f"keep this much free on the disk store (default {WRITEBACK_RESERVE})",
    )
    parser.add_argument("--ollama", metavar="FILE", type=PATH, help="the host's ollama binary")
    add_owner(parser)
    add_flag(parser, "dry-run", "say what would be pulled (asks the registry), change nothing")
    parser.add_argument(
        "--cold", action="append", metavar="MODEL", default=None, help="pulled like MODEL"
    )
    add_models(parser, "model the disk store must have")


def run(options: Options) -> int:
    from .progress import make_reporter  # noqa: PLC0415
    from .pull import PullOptions, pull  # noqa: PLC0415
    from .registry import parse_mirror  # noqa: PLC0415

    mirror = parse_mirror(options.args.mirror, bool(options.args.insecure), options.args.ca_file)
    settings = PullOptions(
        source=options.require("source"),
        models=[*(options.get("models") or []), *(options.get("cold") or [])],
        mirror=mirror,
        reserve=options.args.reserve
        or options.config.get("writeback_reserve")
        or WRITEBACK_RESERVE,
        dry_run=bool(options.get("dry_run", False)),
        owner=options.get("owner"),
        ollama=options.args.ollama,
    )
    outcome = pull(settings, make_reporter(sys.stderr, quiet=options.quiet)).to_dict()
    emit(options, outcome, pull_lines(outcome))
    return EXIT_OK


def pull_lines(outcome: dict[str, Any]) -> list[str]:
    if not outcome["pulled"]:
        return ["nothing to pull: the disk store has every model"]
    if outcome["dry_run"]:
        return [
            f"would pull {model['name']} from {model['registry']}: {human(model['fetch_bytes'])}"
            f" to fetch ({human(model['bytes'])} in all)"
            for model in outcome["pulled"]
        ]
    return [
        f"pulled {model['name']} from {model['registry']}: {human(model['fetched_bytes'])} in"
        f" {model['seconds']:.1f} s ({model['rate']}), {human(model['bytes'])} in all"
        for model in outcome["pulled"]
    ]
