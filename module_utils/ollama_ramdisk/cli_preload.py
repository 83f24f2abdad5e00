"""preload: load models into the running Ollama."""

from __future__ import annotations

from typing import Any

from .cli_common import (
    COUNT,
    PROG,
    SECONDS,
    TEXT,
    Options,
    add_command,
    add_flag,
    add_models,
    emit,
    warn,
)
from .config import to_names
from .defaults import OLLAMA_HOST, PRELOAD_LOAD_TIMEOUT, PRELOAD_RETRIES, PRELOAD_WAIT
from .errors import EXIT_FAILED, EXIT_OK

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


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "preload",
        "load models into the running Ollama",
        description=PRELOAD_DESCRIPTION,
        epilog=PRELOAD_EPILOG,
        progress=False,
    )
    parser.add_argument(
        "--host", dest="ollama_host", type=TEXT, metavar="HOST[:PORT]",
        help=f"Ollama's address, as OLLAMA_HOST says it (default {OLLAMA_HOST})",
    )  # fmt: skip
    parser.add_argument(
        "--keep-alive", type=TEXT, metavar="DURATION",
        help="how long Ollama keeps each model: seconds or a Go duration; -1 for ever (default)",
    )  # fmt: skip
    parser.add_argument(
        "--wait",
        type=SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for the API (default {PRELOAD_WAIT:g})",
    )
    parser.add_argument(
        "--retries",
        type=COUNT,
        metavar="N",
        help=f"loads tried per model (default {PRELOAD_RETRIES})",
    )
    parser.add_argument(
        "--load-timeout", type=SECONDS, metavar="SECONDS",
        help=f"longest one load may take (default {PRELOAD_LOAD_TIMEOUT:g})",
    )  # fmt: skip
    add_flag(parser, "skip-loaded", "leave alone the models Ollama has loaded already")
    add_flag(parser, "dry-run", "say which models would be loaded, load none")
    add_models(parser, "model to load")


def run(options: Options) -> int:
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
        log=warn,
    )
    outcome = result.to_dict()
    verb = "would preload" if result.dry_run else "preloaded"
    lines = [f"{verb} {len(result.loaded)} of {len(models)} model(s)"]
    if result.already_loaded:
        lines.append(f"already loaded: {', '.join(result.already_loaded)}")
    emit(options, outcome, lines)
    return EXIT_FAILED if result.failed else EXIT_OK
