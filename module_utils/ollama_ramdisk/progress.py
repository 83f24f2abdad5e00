"""Progress of long copies and hashes, for people at a terminal and for the journal.

A terminal gets one live line (bytes done of total, percent, rate, ETA),
redrawn a few times a second. Anything else - journald under systemd, a
pipe, a log file - gets a line per blob, a heartbeat line during long
stretches, and a closing summary with the throughput, so that the journal
of an ``ExecStartPre`` says what was copied and how fast.

Workers call ``advance`` from several threads: every method is thread-safe.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TextIO

from .printable import printable
from .sizes import MIB, human

# At most ~5 redraws per second: faster only costs CPU and flicker.
LIVE_INTERVAL = 0.2
# In the journal, a line at least this often while bytes keep moving.
HEARTBEAT_INTERVAL = 30.0

Clock = Callable[[], float]


def rate_text(nbytes: int, seconds: float) -> str:
    """``850.3 MiB/s``; a zero-length interval reads as no rate at all."""
    if seconds <= 0:
        return "- MiB/s"
    return f"{nbytes / MIB / seconds:.1f} MiB/s"


def summary_line(verb: str, count: int, nbytes: int, seconds: float) -> str:
    """``copied 12 blobs, 8.0 GiB in 9.8 s (835.9 MiB/s)``."""
    noun = "blob" if count == 1 else "blobs"
    rate = rate_text(nbytes, seconds)
    return f"{verb} {count} {noun}, {human(nbytes)} in {seconds:.1f} s ({rate})"


def eta_text(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Reporter:
    """Receives progress; this base ignores all of it (library and module use)."""

    def start(self, total_bytes: int, total_files: int) -> None:
        """The work ahead: bytes to move and files to handle."""

    def file_done(self, relpath: str, nbytes: int, action: str) -> None:
        """One file handled: ``action`` is a past participle (copied, linked, ...)."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more moved (called from worker threads)."""

    def warn(self, message: str) -> None:
        """Something the operator must know even when all went through."""

    def finish(self, summary: str) -> None:
        """The run is over; ``summary`` says what it did."""


class _StreamReporter(Reporter):
    """Shared state of the reporters that write to a stream."""

    def __init__(self, stream: TextIO, clock: Clock = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.lock = threading.Lock()
        self.total_bytes = 0
        self.total_files = 0
        self.done_bytes = 0
        self.done_files = 0
        self.started = clock()

    def start(self, total_bytes: int, total_files: int) -> None:
        with self.lock:
            self.total_bytes, self.total_files = total_bytes, total_files
            self.done_bytes = self.done_files = 0
            self.started = self.clock()

    def _write(self, text: str) -> None:
        # Progress must never fail the work it describes (a closed pipe, a full disk).
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _write_line(self, text: str) -> None:
        """A line that may hold names from a store: escaped, one line."""
        self._write(printable(text) + "\n")


class QuietReporter(_StreamReporter):
    """Warnings only: ``--quiet``."""

    def warn(self, message: str) -> None:
        with self.lock:
            self._write_line(f"warning: {message}")


class LineReporter(_StreamReporter):
    """A line per file and a summary: for journald, pipes and log files."""

    def __init__(
        self,
        stream: TextIO,
        clock: Clock = time.monotonic,
        heartbeat: float = HEARTBEAT_INTERVAL,
    ) -> None:
        super().__init__(stream, clock)
        self.heartbeat = heartbeat
        self.last_line = self.started

    def start(self, total_bytes: int, total_files: int) -> None:
        super().start(total_bytes, total_files)
        self.last_line = self.started

    def file_done(self, relpath: str, nbytes: int, action: str) -> None:
        with self.lock:
            self.done_files += 1
            size = f" ({human(nbytes)})" if nbytes else ""
            self._write_line(f"{action} {relpath}{size}")
            self.last_line = self.clock()

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.done_bytes += nbytes
            now = self.clock()
            if now - self.last_line < self.heartbeat:
                return
            self.last_line = now
            percent = 100 * self.done_bytes / self.total_bytes if self.total_bytes else 100.0
            self._write(
                f"progress: {human(self.done_bytes)} of {human(self.total_bytes)}"
                f" ({percent:.0f}%), {rate_text(self.done_bytes, now - self.started)}\n"
            )

    def warn(self, message: str) -> None:
        with self.lock:
            self._write_line(f"warning: {message}")

    def finish(self, summary: str) -> None:
        with self.lock:
            self._write_line(summary)


class LiveReporter(_StreamReporter):
    """One line redrawn in place on a terminal: done/total, %, rate, ETA."""

    def __init__(
        self, stream: TextIO, clock: Clock = time.monotonic, interval: float = LIVE_INTERVAL
    ) -> None:
        super().__init__(stream, clock)
        self.interval = interval
        self.last_draw = float("-inf")
        self.drawn = False

    def file_done(self, relpath: str, nbytes: int, action: str) -> None:
        with self.lock:
            self.done_files += 1
            self._draw(force=self.done_files == self.total_files)

    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.done_bytes += nbytes
            self._draw()

    def warn(self, message: str) -> None:
        with self.lock:
            self._clear()
            self._write_line(f"warning: {message}")
            self._draw(force=True)

    def finish(self, summary: str) -> None:
        with self.lock:
            self._clear()
            self._write_line(summary)

    def line(self) -> str:
        """The progress line as it is drawn now (without control characters)."""
        elapsed = self.clock() - self.started
        done, total = self.done_bytes, self.total_bytes
        percent = 100 * done / total if total else 100.0
        eta = eta_text((total - done) * elapsed / done) if done and elapsed > 0 else "-:--"
        return (
            f"{human(done)} / {human(total)}  {percent:3.0f}%  {rate_text(done, elapsed)}"
            f"  ETA {eta}  [{self.done_files}/{self.total_files} files]"
        )

    def _draw(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        self._write(f"\r\x1b[K{self.line()}")
        self.drawn = True

    def _clear(self) -> None:
        if self.drawn:
            self._write("\r\x1b[K")
            self.drawn = False


def make_reporter(stream: TextIO, quiet: bool = False) -> Reporter:
    """A live line on a terminal, lines for the journal elsewhere, warnings only if quiet."""
    if quiet:
        return QuietReporter(stream)
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return LiveReporter(stream) if interactive else LineReporter(stream)


class WarningCollector(Reporter):
    """Keeps the core's warnings for an Ansible module's result; no progress output."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)
