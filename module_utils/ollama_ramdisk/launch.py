"""The command's entry point: no signal is lost or mangled while the core loads.

Until ``cli.main`` installs the handlers that stop a run cleanly, a SIGINT
would raise KeyboardInterrupt inside whichever import is running (inside a
class's creation Python even turns it into a RuntimeError: exit 1 and a
traceback), and a SIGTERM would kill the process. So importing this module
blocks both first, with the interpreter's built-in ``_signal`` (``signal``
itself imports ``enum``); ``main`` lets them through once its handlers are in
place, and one that came meanwhile stops the run there, before any work, with
130 or 143. Only launchers import this module: the console script, and the
command the role installs on each host.
"""

from __future__ import annotations

try:
    import _signal as _early_signal
except ImportError:  # not CPython
    import signal as _early_signal

_early_signal.pthread_sigmask(
    _early_signal.SIG_BLOCK, {_early_signal.SIGINT, _early_signal.SIGTERM}
)


def run() -> int:
    """Run the command line (signals are let through by ``cli.main``)."""
    from .cli import main  # noqa: PLC0415 - after the block above, on purpose

    return main()
