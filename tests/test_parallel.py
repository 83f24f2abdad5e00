"""safeio.parallel: the worker pool of populate and verify."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from ollama_ramdisk import stopping
from ollama_ramdisk.safeio import parallel
from ollama_ramdisk.stopping import Interrupted, check_stop


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
    four_failed = threading.Event()

    def fail_on_odd(item: int) -> int:
        started.append(item)
        if item == 3:
            four_failed.wait(timeout=30)  # the later failure lands first (an event, not a delay)
            raise ValueError("three")
        if item == 4:
            four_failed.set()
            raise KeyError("four")
        return item

    with pytest.raises(ValueError, match="three"):
        parallel(fail_on_odd, list(range(100)), jobs=2)

    assert len(started) < 10  # the other 90-odd items were never handed out


def test_nothing_to_do_starts_no_thread() -> None:
    before = threading.active_count()

    assert parallel(lambda item: item, [], jobs=4) == []
    assert threading.active_count() == before


def _long_copy(stopped: list[int], started: threading.Event):
    """A copy of 5 s that stops at its next chunk when told; ``started`` is set
    at its first chunk."""

    def copy(item: int) -> None:
        started.set()
        try:
            for _ in range(500):  # 5 s unless stopped
                check_stop(f"item {item}")
                time.sleep(0.01)
        except Interrupted:
            stopped.append(item)
            raise

    return copy


def _signal_once_started(signum: int, started: threading.Event) -> threading.Thread:
    """Send ``signum`` to this process once the workers run (an event, not a delay)."""

    def send() -> None:
        if started.wait(timeout=30):
            os.kill(os.getpid(), signum)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_workers_at_their_next_chunk_and_is_raised_once_they_returned(
    signum: int,
) -> None:
    stopped: list[int] = []
    started = threading.Event()
    copy = _long_copy(stopped, started)

    stopping.install_handlers()
    sender = _signal_once_started(signum, started)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt), stopping.interruptible():
        parallel(copy, [1, 2], jobs=2)
    sender.join(timeout=30)

    assert sorted(stopped) == [1, 2]  # both had returned when it was raised
    assert time.monotonic() - began < 2
    assert stopping.exit_code() == 128 + signum


def test_a_signal_before_the_call_is_raised_before_any_work() -> None:
    stopping.install_handlers()
    os.kill(os.getpid(), signal.SIGTERM)  # noted, not raised: no command runs yet
    ran: list[int] = []

    with pytest.raises(KeyboardInterrupt), stopping.interruptible():
        parallel(ran.append, [1, 2, 3], jobs=2)

    assert ran == []


def test_a_second_signal_while_the_workers_stop_raises_nothing_more() -> None:
    stopped: list[int] = []
    started = threading.Event()
    copy = _long_copy(stopped, started)

    def copy_and_signal_again(item: int) -> None:
        try:
            copy(item)
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # while the caller waits for the others

    stopping.install_handlers()
    _signal_once_started(signal.SIGTERM, started)
    with pytest.raises(KeyboardInterrupt), stopping.interruptible():
        parallel(copy_and_signal_again, [1, 2], jobs=2)

    assert sorted(stopped) == [1, 2]
    assert stopping.exit_code() == 128 + signal.SIGTERM  # the first signal decides


def test_an_exception_in_the_caller_abandons_the_workers_and_later_work_goes_on() -> None:
    """Without the command's handlers (a module, a library caller), SIGINT raises
    KeyboardInterrupt in the waiting caller: the workers stop all the same."""
    stopped: list[int] = []
    started = threading.Event()
    copy = _long_copy(stopped, started)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    _signal_once_started(signal.SIGINT, started)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel(copy, [1, 2], jobs=2)

    # The signal may come before the second worker was started: then it never is.
    assert sorted(stopped) in ([1], [1, 2])
    assert time.monotonic() - began < 2
    check_stop("later work in the same process")  # not told to stop any more


def test_workers_leave_the_signals_to_the_main_thread() -> None:
    masks: list[set[int]] = []

    parallel(lambda _item: masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])), [1, 2], 2)

    assert all({signal.SIGINT, signal.SIGTERM} <= mask for mask in masks)
