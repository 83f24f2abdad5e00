"""push: seed a fleet mirror with models of a disk store."""

from __future__ import annotations

from typing import Any

from .cli_common import (
    PATH,
    PROG,
    Options,
    add_command,
    add_models,
    emit,
    exit_status_text,
)
from .cli_pull import add_mirror_options
from .errors import EXIT_OK, InvalidOption

PUSH_DESCRIPTION = """\
Push every MODEL of the disk store to the fleet's mirror (an OCI registry),
by the host's own Ollama (a private `ollama serve` on the disk store, as for
pull). Each model is pushed as HOST:PORT/namespace/model:tag, the name `pull
--mirror` asks for; that name is removed from the store afterwards. Blobs the
mirror has are not sent again."""

PUSH_EPILOG = f"""\
output (--json keys): changed, pushed (models), present (on the mirror
  already, not sent again), skipped (not of registry.ollama.ai), mirror,
  seconds.

examples:
  {PROG} push --source /usr/share/ollama/.ollama/models \\
      --mirror mirror.example:5000 --insecure llama3.1:8b

{exit_status_text("the mirror cannot be reached or refuses a blob")}"""


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "push",
        "seed a fleet mirror with models of the disk store",
        description=PUSH_DESCRIPTION,
        epilog=PUSH_EPILOG,
        progress=True,
    )
    parser.add_argument("--source", metavar="DIR", type=PATH, help="the disk store (read)")
    add_mirror_options(parser)
    parser.add_argument("--ollama", metavar="FILE", type=PATH, help="the host's ollama binary")
    add_models(parser, "model to push")


def run(options: Options) -> int:
    from .mirror_push import PushOptions, push  # noqa: PLC0415
    from .registry import parse_mirror  # noqa: PLC0415

    mirror = parse_mirror(options.args.mirror, bool(options.args.insecure), options.args.ca_file)
    if mirror is None:
        raise InvalidOption("--mirror is required: the registry to push to")
    models = options.get("models") or []
    if not models:
        raise InvalidOption("name at least one MODEL to push")
    outcome = push(PushOptions(options.require("source"), models, mirror, options.args.ollama))
    lines = [f"pushed {model} to {mirror.address}" for model in outcome["pushed"]]
    lines += [f"{model}: on {mirror.address} already" for model in outcome["present"]]
    lines += [f"{model}: not of registry.ollama.ai, not pushed" for model in outcome["skipped"]]
    emit(options, outcome, lines)
    return EXIT_OK
