"""Progress: a live line on a terminal, a line per blob and a summary elsewhere."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from ollama_ramdisk.populate import PopulateOptions, populate
from ollama_ramdisk.progress import (
    LineReporter,
    LiveReporter,
    QuietReporter,
    eta_text,
    make_reporter,
    rate_text,
    summary_line,
)
from ollama_ramdisk.store import Store
from ollama_ramdisk.verify import verify_store
from storegen import MountTmpfs, StoreFactory, SyntheticStore, make_store, weights

MIB = 1024 * 1024


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_etas_and_summaries_read_well() -> None:
    assert rate_text(850 * MIB, 1.0) == "850.0 MiB/s"
    assert rate_text(MIB, 0) == "- MiB/s"
    assert eta_text(59.6) == "1:00"
    assert eta_text(3725) == "1:02:05"
    assert summary_line("copied", 1, 8 * 1024 * MIB, 10.0) == (
        "copied 1 blob, 8.0 GiB in 10.0 s (819.2 MiB/s)"
    )


def test_the_live_line_shows_done_total_percent_rate_and_eta() -> None:
    clock, stream = Clock(), io.StringIO()
    reporter = LiveReporter(stream, clock=clock)
    reporter.start(400 * MIB, 4)
    clock.now += 2
    reporter.advance(100 * MIB)

    assert reporter.line() == ("100.0 MiB / 400.0 MiB   25%  50.0 MiB/s  ETA 0:06  [0/4 files]")
    assert stream.getvalue().endswith("\r\x1b[K" + reporter.line())


def test_the_live_line_is_redrawn_at_most_a_few_times_a_second() -> None:
    clock, stream = Clock(), io.StringIO()
    reporter = LiveReporter(stream, clock=clock)
    reporter.start(100 * MIB, 100)
    for _ in range(100):
        reporter.advance(MIB)
    clock.now += 1
    reporter.advance(0)

    assert stream.getvalue().count("\r\x1b[K") == 2


def test_a_warning_and_the_summary_replace_the_live_line() -> None:
    clock, stream = Clock(), io.StringIO()
    reporter = LiveReporter(stream, clock=clock)
    reporter.start(MIB, 1)
    reporter.advance(MIB // 2)
    reporter.warn("blobs/sha256-ab does not fit")
    reporter.finish("copied 1 blob")

    text = stream.getvalue()
    assert "\r\x1b[Kwarning: blobs/sha256-ab does not fit\n" in text
    assert text.endswith("\r\x1b[Kcopied 1 blob\n")


def test_the_journal_gets_a_line_per_file_heartbeats_and_the_summary() -> None:
    clock, stream = Clock(), io.StringIO()
    reporter = LineReporter(stream, clock=clock, heartbeat=30)
    reporter.start(2048 * MIB, 2)
    reporter.advance(512 * MIB)
    clock.now += 31
    reporter.advance(512 * MIB)
    reporter.file_done("blobs/sha256-aa", 1024 * MIB, "copied")
    reporter.file_done("blobs/sha256-bb", 0, "linked")
    reporter.finish("copied 1 blob, 1.0 GiB in 31.0 s (33.0 MiB/s)")

    assert stream.getvalue().splitlines() == [
        "progress: 1.0 GiB of 2.0 GiB (50%), 33.0 MiB/s",
        "copied blobs/sha256-aa (1.0 GiB)",
        "linked blobs/sha256-bb",
        "copied 1 blob, 1.0 GiB in 31.0 s (33.0 MiB/s)",
    ]
    assert "\r" not in stream.getvalue()


def test_quiet_keeps_only_warnings() -> None:
    stream = io.StringIO()
    reporter = QuietReporter(stream)
    reporter.start(MIB, 1)
    reporter.file_done("blobs/sha256-aa", MIB, "copied")
    reporter.warn("something to know")
    reporter.finish("copied 1 blob")

    assert stream.getvalue() == "warning: something to know\n"


def test_the_kind_of_reporter_follows_the_stream() -> None:
    main, other = pty.openpty()
    try:
        with open(other, "w", closefd=False) as terminal:
            assert isinstance(make_reporter(terminal), LiveReporter)
    finally:
        os.close(main)
        os.close(other)
    assert isinstance(make_reporter(io.StringIO()), LineReporter)
    assert isinstance(make_reporter(io.StringIO(), quiet=True), QuietReporter)


# ------------------------------------------------------------ the command


@pytest.fixture
def populate_argv(store_factory: StoreFactory, tmpfs: MountTmpfs) -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("mounting tmpfs needs root")
    built = store_factory({"m:1": [weights(3 * MIB, "a"), weights(MIB, "b")]})
    dest = tmpfs("16m") / "models"
    argv = [sys.executable, "-m", "ollama_ramdisk.cli", "populate"]
    return [*argv, "--source", str(built.root), "--dest", str(dest), "m:1"]


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 10)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal closed: EIO
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_on_a_terminal_the_command_draws_a_live_line(populate_argv: list[str]) -> None:
    main, other = pty.openpty()
    process = subprocess.Popen(populate_argv, stdin=subprocess.DEVNULL, stdout=other, stderr=other)
    os.close(other)
    text = _read_all(main)
    os.close(main)

    assert process.wait(timeout=30) == 0
    assert "\r\x1b[K" in text
    # Bytes done of total, percent, rate and ETA on the redrawn line.
    assert re.search(r"\r\x1b\[K4\.0 MiB / 4\.0 MiB  100%  [\d.]+ MiB/s  ETA 0:00", text)
    assert "copied 3 blobs" in text


def test_elsewhere_the_command_writes_a_line_per_blob_and_the_throughput(
    populate_argv: list[str],
) -> None:
    completed = subprocess.run(populate_argv, capture_output=True, text=True, check=True)

    lines = completed.stderr.splitlines()
    assert "\r" not in completed.stderr
    assert sum(line.startswith("copied blobs/sha256-") for line in lines) == 3
    assert any(line.startswith("installed manifests/") for line in lines)
    assert lines[-1].startswith("copied 3 blobs, 4.0 MiB in ")
    assert "MiB/s)" in lines[-1]


# ------------------------------------------------------------ counts of real runs


def _file_counts(drawn: str) -> list[tuple[int, int]]:
    """Every ``[done/total files]`` the live line showed."""
    return [(int(done), int(total)) for done, total in re.findall(r"\[(\d+)/(\d+) files\]", drawn)]


@pytest.fixture
def ramdisk(store_factory: StoreFactory, tmpfs: MountTmpfs) -> tuple[SyntheticStore, Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting tmpfs needs root")
    built = store_factory({"a:1": [weights(MIB, "a"), b"license"], "b:2": [b"license", 5000]})
    return built, tmpfs("16m") / "models"


def test_the_live_line_of_a_populate_never_counts_more_files_than_it_announced(
    ramdisk: tuple[SyntheticStore, Path],
) -> None:
    built, dest = ramdisk
    stream = io.StringIO()

    populate(
        PopulateOptions(source=built.root, dest=dest, models=["a:1", "b:2"]),
        LiveReporter(stream, interval=0),  # every update drawn
    )

    counts = _file_counts(stream.getvalue())
    # Two configs, two weights, the license they share, and two manifests.
    assert counts[-1] == (7, 7)
    assert all(done <= total for done, total in counts)


def test_the_live_line_of_a_verify_repair_never_counts_more_files_than_it_announced(
    ramdisk: tuple[SyntheticStore, Path],
) -> None:
    built, dest = ramdisk
    populate(PopulateOptions(source=built.root, dest=dest, models=["a:1", "b:2"]))
    make_store(dest).corrupt(built.models["a:1"].layers[0])
    stream = io.StringIO()

    result = verify_store(
        Store(dest), repair_source=Store(built.root), reporter=LiveReporter(stream, interval=0)
    )

    assert result.repaired == [built.models["a:1"].layers[0].relpath]
    counts = _file_counts(stream.getvalue())
    assert counts
    assert all(done <= total for done, total in counts)
    # The repair is drawn as a phase of its own, with the bytes it copies.
    assert "1.0 MiB / 1.0 MiB  100%" in stream.getvalue()
