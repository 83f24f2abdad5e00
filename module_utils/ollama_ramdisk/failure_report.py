"""How a failed run reports itself: its stderr line and its ``--json`` answer.

Apart from the CLI, the launcher uses these while the core is still loading
(launch.py), so this module imports nothing of the core and nothing slow.
"""

from __future__ import annotations

from collections.abc import Sequence

PROG = "ollama-ramdisk"


def asks_for_json(arguments: Sequence[str]) -> bool:
    """Whether the command line asks for the ``--json`` answer (before the
    parser has run, or where it failed)."""
    return "--json" in arguments


def error_line(text: str) -> str:
    """The stderr line of one problem (``text`` already made printable)."""
    return f"{PROG}: error: {text}"


def error_document(message: str, code: int, problems: Sequence[str] = ()) -> dict[str, object]:
    """The one JSON object that ``--json`` prints on stdout when a run fails."""
    return {"error": message, "problems": list(problems) or [message], "exit_code": code}


def interrupted_by(signal_name: str) -> str:
    """The failure of a run that SIGINT or SIGTERM stopped."""
    return f"interrupted by {signal_name}"
