"""safeio.parallel: the worker pool of populate and verify."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from ollama_ramdisk.safeio import Interrupted, check_stop, parallel


def test_results_come_back_in_the_order_of_the_items() -> None:
    def slow_for_small(item: int) -> int:
        time.sleep(0.002 * (10 - item))
        return item * item

    assert parallel(slow_for_small, list(range(10)), jobs=3) == [n * n for n in range(10)]


@pytest.mark.parametrize("jobs", [1, 2, 8])
def test_no_more_workers_than_jobs_or_items(jobs: int) -> None:
    active: set[int] = set()
    most = 0
    lock = threading.Lock()

    def note(_item: int) -> None:
        nonlocal most
        with lock:
            active.add(threading.get_ident())
            most = max(most, len(active))
        time.sleep(0.01)
        with lock:
            active.discard(threading.get_ident())

    parallel(note, list(range(5)), jobs=jobs)

    assert most <= min(jobs, 5)


def test_the_earliest_failure_is_raised_and_no_new_item_is_started_after_one() -> None:
    started: list[int] = []

    def fail_on_odd(item: int) -> int:
        started.append(item)
        if item == 3:
            time.sleep(0.05)  # the later failure lands first
            raise ValueError("three")
        if item == 4:
            raise KeyError("four")
        return item

    with pytest.raises(ValueError, match="three"):
        parallel(fail_on_odd, list(range(100)), jobs=2)

    assert len(started) < 10  # the other 90-odd items were never handed out


def test_nothing_to_do_starts_no_thread() -> None:
    before = threading.active_count()

    assert parallel(lambda item: item, [], jobs=4) == []
    assert threading.active_count() == before


def test_an_exception_in_the_caller_stops_the_workers_at_their_next_chunk() -> None:
    """SIGINT while the caller waits: KeyboardInterrupt in its thread."""
    stopped: list[int] = []
    caller = threading.main_thread()
    assert threading.current_thread() is caller

    def long_copy(item: int) -> None:
        try:
            for _ in range(500):  # 5 s unless stopped
                check_stop(f"item {item}")
                time.sleep(0.01)
        except Interrupted:
            stopped.append(item)
            raise

    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel(long_copy, [1, 2], jobs=2)

    assert sorted(stopped) == [1, 2]
    assert time.monotonic() - began < 2
    check_stop("later work in the same process")  # not told to stop any more
