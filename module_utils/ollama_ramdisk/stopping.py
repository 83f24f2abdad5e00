"""Stopping a run on SIGINT or SIGTERM: at once, at a safe point, never half-way.

The first signal sets one flag that every copy and hash loop checks between
chunks (``check_stop``), in whichever thread it runs, and raises
KeyboardInterrupt in the main thread while a command runs (``interruptible``),
so that a wait on a lock, a socket or a pause ends at once. Inside a deferred
section (the main thread waiting for its workers) nothing is raised: the
workers stop at their next chunk, the section ends, and the interruption is
raised there. Later signals only set the flag: the run is already stopping,
and an exception raised into its clean-up would leave a temporary file
behind. Outside ``interruptible`` (the command has not started, or has
ended and is reporting) a signal is noted and never raised.

The handlers are installed whatever the process inherited: a script's
background job, or a CI runner's, starts with SIGINT ignored, and a run that
cannot be stopped holds the store's lock.
"""

from __future__ import annotations

import signal
import threading
from types import TracebackType

from .errors import OperationFailed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    """The first signal, and the main thread's deferred sections (only the main
    thread, where Python runs handlers, reads or writes these)."""

    signal = 0
    interruptible = False
    deferring = 0
    pending = False


_stop = threading.Event()
_state = _State()
_worker = threading.local()


class Interrupted(OperationFailed):
    """SIGINT or SIGTERM arrived: the workers stopped; nothing partial is kept."""

    @property
    def exit_code(self) -> int:  # type: ignore[override] - the signal decides
        return exit_code()


def exit_code() -> int:
    """128 + the signal that stopped the run, as shells report it (130, 143)."""
    return 128 + (_state.signal or signal.SIGINT)


def signal_name() -> str:
    return signal.Signals(_state.signal or signal.SIGINT).name


def check_stop(where: object) -> None:
    """Called between chunks by copy and hash loops, in any thread."""
    abandoned = getattr(_worker, "abandoned", None)
    if _stop.is_set() or (abandoned is not None and abandoned.is_set()):
        raise Interrupted(f"{where}: interrupted")


def enter_worker(abandoned: threading.Event) -> None:
    """In a worker thread: ``check_stop`` also stops once ``abandoned`` is set,
    and the stop signals are blocked, so that the kernel hands them to the main
    thread, whose wait they must wake."""
    _worker.abandoned = abandoned
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def request_stop(signum: int) -> None:
    """What the handler does: note the signal; raise in the main thread if it
    is the first, a command runs, and no deferred section is open."""
    first = not _stop.is_set()
    if first:
        _state.signal = signum
        _stop.set()
    if not (first and _state.interruptible):
        return
    if _state.deferring:
        _state.pending = True
        return
    raise KeyboardInterrupt


def _on_signal(signum: int, _frame: object) -> None:
    request_stop(signum)


def install_handlers() -> None:
    """SIGINT and SIGTERM stop the run (main thread only: Python's rule)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _on_signal)


def let_through() -> None:
    """Unblock SIGINT and SIGTERM in this thread, once the handlers are in place:
    a mask inherited from the parent would hold them for the whole run, and one
    that came meanwhile is handled now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def reset() -> None:
    """Forget a signal: for a process that runs several commands (the tests)."""
    _stop.clear()
    _state.signal, _state.interruptible, _state.deferring, _state.pending = 0, False, 0, False


class interruptible:
    """While a command runs: the first signal raises KeyboardInterrupt (at once,
    or when a deferred section ends). One that came before is raised on entry."""

    def __enter__(self) -> None:
        if _stop.is_set():
            raise KeyboardInterrupt
        _state.interruptible = True

    def __exit__(self, *_exc: object) -> None:
        _state.interruptible = False


class signals_deferred:
    """No KeyboardInterrupt inside; a signal that arrived is raised at the end,
    unless the section is already ending with an exception of its own."""

    def __init__(self) -> None:
        self._active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> None:
        if self._active:
            _state.deferring += 1

    def __exit__(
        self,
        kind: type[BaseException] | None,
        _error: BaseException | None,
        _trace: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        _state.deferring -= 1
        if _state.deferring == 0 and _state.pending:
            _state.pending = False
            if kind is None:
                raise KeyboardInterrupt
