"""The command's entry point: a signal that comes while the core loads stops
the run at once, before any work, with 130 or 143 and the usual report.

Until ``cli.main`` installs the handlers that stop a run cleanly, a SIGINT
would raise KeyboardInterrupt inside whichever import is running (inside a
class's creation Python even turns it into a RuntimeError: exit 1 and a
traceback), a SIGTERM would kill the process, and a SIGINT that the parent
ignores (a script's background job) would be ignored. So the first line
blocks both, with the interpreter's built-in ``_signal`` (``signal`` itself
imports ``enum``); then a handler of this module takes them, one that came
meanwhile included. Nothing has been touched yet, so it reports and ends the
process at once: under load the rest of the import can take longer than the
one second a stop may take. ``cli.main`` replaces it. Only launchers import
this module: the console script, and the command the role installs on each
host. (A signal sent before the interpreter reaches the first line meets
Python's own defaults, or the parent's ignored SIGINT: no code of ours runs
there.)
"""

from __future__ import annotations

try:
    import _signal as _early_signal
except ImportError:  # not CPython
    import signal as _early_signal

_STOP_SIGNALS = {_early_signal.SIGINT: "SIGINT", _early_signal.SIGTERM: "SIGTERM"}
_early_signal.pthread_sigmask(_early_signal.SIG_BLOCK, set(_STOP_SIGNALS))

import json  # noqa: E402 - after the block above, on purpose
import os  # noqa: E402
import sys  # noqa: E402

from .failure_report import asks_for_json, error_document, error_line, interrupted_by  # noqa: E402


def _stop_before_any_work(signum: int, _frame: object) -> None:
    """Report as ``cli.main`` reports an interrupted run, and end the process:
    there is nothing to clean up, and no buffered output to lose."""
    message = interrupted_by(_STOP_SIGNALS[signum])
    code = 128 + signum
    try:
        os.write(2, f"{error_line(message)}\n".encode())
        if asks_for_json(sys.argv[1:]):
            os.write(1, f"{json.dumps(error_document(message, code), indent=2)}\n".encode())
    except OSError:
        pass  # a closed stream must not keep the process alive
    os._exit(code)


for _signum in _STOP_SIGNALS:
    _early_signal.signal(_signum, _stop_before_any_work)
_early_signal.pthread_sigmask(_early_signal.SIG_UNBLOCK, set(_STOP_SIGNALS))


def run() -> int:
    """Run the command line (``cli.main`` takes the signals over).

    A run that a signal stopped has cleaned up and reported when ``main``
    returns, and its workers have ended: it ends at once. The interpreter's
    finalization would add tens of milliseconds idle, several times that
    under load, to the one second a stop may take."""
    from .cli import main  # noqa: PLC0415 - after the handlers above, on purpose

    code = main()
    if code - 128 in _STOP_SIGNALS:
        _end_now(code)
    return code


def _end_now(code: int) -> None:
    import contextlib  # noqa: PLC0415 - loaded by the core already; not before the handlers

    for stream in (sys.stdout, sys.stderr):
        # A closed stream must not keep the process alive.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
