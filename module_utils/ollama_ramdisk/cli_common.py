"""What every command of the command line shares: option types that reject
as the config file does, common options, the merged options, and output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

from .config import to_count, to_number, to_path, to_size, to_text
from .defaults import LOCK_TIMEOUT
from .errors import InvalidOption
from .failure_report import PROG
from .plan import check_headroom
from .printable import printable, write_line
from .store import Store


def exit_status_text(failure: str) -> str:
    """The EXIT STATUS section of a command's help, with what makes it fail."""
    return (
        "exit status:\n"
        "  0  success\n"
        f"  1  the operation failed: {failure}\n"
        "  2  invalid input: bad model name, model not in the source store,\n"
        "     malformed manifest, bad option or config file"
    )


EXIT_STATUS = exit_status_text("does not fit, out of space, verification\n     mismatch, I/O error")


class UsageError(InvalidOption):
    """A command line argparse refused; carries the usage line to show with it."""

    def __init__(self, usage: str, message: str) -> None:
        self.usage = usage
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        # Raised, not printed: main() reports it like every other error (exit 2).
        raise UsageError(self.format_usage(), message)


def converter(check: Callable[[object], Any], metavar: str) -> Callable[[str], Any]:
    """An argparse type from a config check, so both sources reject alike."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = metavar
    return convert


def headroom_arg(text: str) -> float:
    try:
        return check_headroom(text)
    except InvalidOption as error:
        raise argparse.ArgumentTypeError(str(error).replace("headroom: ", "", 1)) from None


SIZE = converter(to_size, "SIZE")


PATH = converter(to_path, "DIR")


COUNT = converter(to_count, "N")


SECONDS = converter(to_number, "SECONDS")


TEXT = converter(to_text, "TEXT")


def add_common(parser: argparse.ArgumentParser, progress: bool) -> None:
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


def add_flag(parser: argparse.ArgumentParser, name: str, help_text: str) -> None:
    """--NAME / --no-NAME, unset by default so that the config file can decide."""
    parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, help=help_text)


def add_models(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("models", nargs="*", metavar="MODEL", default=None, help=what)


def add_owner(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--owner",
        type=TEXT,
        metavar="USER[:GROUP]",
        help="owner of what is created (directories 0755, files 0644)",
    )


def add_lock_timeout(parser: argparse.ArgumentParser, where: str) -> None:
    parser.add_argument(
        "--lock-timeout",
        type=SECONDS,
        metavar="SECONDS",
        help=f"how long to wait for another run on {where} (default {LOCK_TIMEOUT:g})",
    )


def add_state_dir(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--state-dir", metavar="DIR", type=PATH, help=what)


def add_report_to(parser: argparse.ArgumentParser) -> None:
    add_state_dir(
        parser,
        "keep how this run ended in DIR/last-COMMAND.json, for status --state-dir (the metrics)",
    )


def add_cold(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cold",
        action="append",
        metavar="MODEL",
        default=None,
        help="a model visible to Ollama but served from the disk store, its blobs "
        "linked, not copied (repeatable; replaces the config's list)",
    )


def add_command(
    commands: Any, name: str, summary: str, *, description: str, epilog: str, progress: bool
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(parser, progress)
    return parser


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

    def set_values(self, *keys: str) -> dict[str, Any]:
        """The keys that were set somewhere, for calls whose defaults live in the core."""
        return {key: self.get(key) for key in keys if self.get(key) is not None}

    @property
    def json(self) -> bool:
        return bool(self.get("json", False))

    @property
    def quiet(self) -> bool:
        return bool(self.get("quiet", False))


def emit(options: Options, result: Mapping[str, Any], lines: Sequence[str]) -> None:
    options.outcome = result
    if options.json:
        write_line(json.dumps(result, indent=2))
    else:
        for line in lines:
            write_line(printable(line))


def warn(message: str) -> None:
    write_line(f"{PROG}: {printable(message)}", sys.stderr)


def existing_store(path: Path, option: str) -> Store:
    store = Store(path)
    store.require_directory(option)
    return store


def blobs_text(count: int) -> str:
    return f"{count} blob" if count == 1 else f"{count} blobs"
