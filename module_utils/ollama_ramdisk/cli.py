"""``ollama-ramdisk``: plan, populate, verify and show a RAM disk of Ollama models.

The one place where exceptions become exit statuses: 0 success, 1 the
operation failed, 2 invalid input (RamdiskError.exit_code; argparse's own
errors are invalid input too; an OSError is a failed operation, reported with
its path)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from types import ModuleType

from . import (
    __version__,
    cli_plan,
    cli_populate,
    cli_preload,
    cli_pull,
    cli_push,
    cli_status,
    cli_verify,
    cli_writeback,
    stopping,
)
from .cli_common import EXIT_STATUS, PROG, Options, Parser, UsageError, add_common, warn
from .config import load_config
from .errors import EXIT_FAILED, EXIT_INVALID, RamdiskError, os_error_text
from .failure_report import asks_for_json, error_document, error_line, interrupted_by
from .printable import printable, write_line
from .runreport import REPORTED_COMMANDS, make_report, write_report

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


# In the order --help lists them; each module has add_parser(commands) and run(options).
COMMANDS: dict[str, ModuleType] = {
    "plan": cli_plan,
    "populate": cli_populate,
    "verify": cli_verify,
    "status": cli_status,
    "writeback": cli_writeback,
    "preload": cli_preload,
    "pull": cli_pull,
    "push": cli_push,
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description=MAIN_DESCRIPTION,
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_common(parser, progress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS.values():
        command.add_parser(commands)
    return parser


def _report_error(message: str, code: int, as_json: bool, problems: Sequence[str] = ()) -> None:
    """Each problem on its own stderr line; with --json, also one JSON object on stdout.
    A line break inside a problem (a name read from a store) is escaped, never
    a line of its own."""
    for line in problems or [message]:
        write_line(error_line(printable(line)), sys.stderr)
    if as_json:
        write_line(json.dumps(error_document(message, code, problems), indent=2))


def _run_reported(command: str, options: Options) -> int:
    """Run a command; with a state directory, keep how a real run of populate,
    writeback or verify ended (success or not) for the metrics."""
    state_dir = options.get("state_dir")
    if command not in REPORTED_COMMANDS or state_dir is None or options.get("dry_run"):
        return COMMANDS[command].run(options)
    started = time.monotonic()
    code, error = EXIT_FAILED, None
    try:
        code = COMMANDS[command].run(options)
    except (KeyboardInterrupt, stopping.Interrupted):
        code, error = stopping.exit_code(), interrupted_by(stopping.signal_name())
        raise
    except RamdiskError as failure:
        code, error = failure.exit_code, str(failure)
        raise
    except OSError as failure:
        code, error = EXIT_FAILED, os_error_text(failure)
        raise
    finally:
        # Written whole even when a signal arrives meanwhile.
        with stopping.signals_deferred():
            report = make_report(
                command,
                seconds=time.monotonic() - started,
                exit_code=code,
                outcome=options.outcome,
                error=error,
            )
            write_report(state_dir, report, warn)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, 1, 2, or 128 + the
    signal that stopped it: SIGINT and SIGTERM stop the workers at their next
    chunk, and temporary files go)."""
    stopping.reset()
    stopping.install_handlers()
    stopping.let_through()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        with stopping.interruptible():
            return _run_command(arguments)
    except KeyboardInterrupt:
        # Here a signal is never raised again (stopping.interruptible has ended).
        return _interrupted(asks_for_json(arguments))


def _interrupted(as_json: bool) -> int:
    _report_error(interrupted_by(stopping.signal_name()), stopping.exit_code(), as_json)
    return stopping.exit_code()


def _run_command(arguments: list[str]) -> int:
    as_json = asks_for_json(arguments)
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
    except stopping.Interrupted:
        return _interrupted(as_json)
    except RamdiskError as error:
        problems = [str(problem) for problem in getattr(error, "problems", [])]
        _report_error(str(error), error.exit_code, as_json, problems)
        return error.exit_code
    except OSError as error:
        _report_error(os_error_text(error), EXIT_FAILED, as_json)
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
