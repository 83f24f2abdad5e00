"""Text that a store, a run report or a server wrote, made safe to print.

The ``ollama`` user owns the stores and the state directory, and any client
of Ollama's API names models: a name or message read there may hold terminal
escape sequences (which retitle, clear or rewrite an operator's screen) or
line breaks (which forge whole lines in a root unit's journal). Every line
of text output goes through ``printable``; JSON output stays exact, since
JSON escapes control characters itself.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

# C0 and C1 controls, DEL, and the marks that reorder what a terminal shows
# (bidirectional overrides and isolates, line and paragraph separators).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each unsafe character as an escape (``\\x1b``, ``\\x0a``,
    ``\\u202e``), everything else as it is."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def write_line(text: str, stream: TextIO | None = None) -> None:
    """The one writer of the command line's output (standard output unless told):
    the core also runs inside Ansible modules, where nothing may print, and this
    is the only door to a terminal that its commands use."""
    (stream or sys.stdout).write(text + "\n")
