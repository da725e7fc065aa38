"""driver.run_concurrently, the driver's wait on its members' threads: results in order, the
first failure or an interrupt raised at once, STOPPING set (threads and events, no Ray)."""

from __future__ import annotations

import threading

import pytest

from committee.distributed import driver

WAIT_S = 5.0  # a bound on every wait here, so that a broken run_concurrently fails, not hangs
POLL_S = 0.005


@pytest.fixture(autouse=True)
def stopping_clear():
    driver.STOPPING.clear()
    yield
    driver.STOPPING.clear()


@pytest.fixture
def release():
    """An event the blocked calls wait on; set at teardown, and their threads joined."""
    event = threading.Event()
    yield event
    event.set()
    for thread in threading.enumerate():
        if thread.name.startswith("member-"):
            thread.join(WAIT_S)


def test_results_come_back_in_the_order_of_the_calls_not_of_finishing():
    second_done, third_done = threading.Event(), threading.Event()

    def first():
        assert third_done.wait(WAIT_S)
        return "first"

    def second():
        second_done.set()
        return "second"

    def third():
        assert second_done.wait(WAIT_S)
        third_done.set()
        return "third"

    assert driver.run_concurrently([first, second, third], poll_s=POLL_S) == [
        "first",
        "second",
        "third",
    ]
    assert not driver.STOPPING.is_set()


def test_no_calls_give_no_results():
    assert driver.run_concurrently([], poll_s=POLL_S) == []


def test_a_failure_is_raised_at_once_while_the_other_calls_still_run(release):
    boom = ValueError("member-1 failed")

    def blocked():
        release.wait(WAIT_S)
        return "late"

    def failing():
        raise boom

    with pytest.raises(ValueError) as raised:
        driver.run_concurrently([blocked, failing], poll_s=POLL_S)
    assert raised.value is boom
    assert "member-0" in {t.name for t in threading.enumerate()}  # blocked until teardown
    assert driver.STOPPING.is_set()  # the running member must not save from here on


def test_the_first_failure_in_time_is_raised_not_the_first_in_order(release):
    def fails_later():
        release.wait(WAIT_S)
        raise ValueError("second in time")

    def fails_first():
        raise KeyError("first in time")

    with pytest.raises(KeyError, match="first in time"):
        driver.run_concurrently([fails_later, fails_first], poll_s=POLL_S)
    assert driver.STOPPING.is_set()


def test_a_base_exception_in_a_call_reaches_the_caller(release):
    def blocked():
        release.wait(WAIT_S)

    def exits():
        raise SystemExit(3)

    with pytest.raises(SystemExit) as raised:
        driver.run_concurrently([blocked, exits], poll_s=POLL_S)
    assert raised.value.code == 3 and driver.STOPPING.is_set()


def test_on_tick_runs_in_the_caller_between_joins_while_calls_run():
    ticks: list[str] = []
    ticked_thrice = threading.Event()

    def on_tick():
        ticks.append(threading.current_thread().name)
        if len(ticks) == 3:
            ticked_thrice.set()

    def waits_for_three_ticks():
        return ticked_thrice.wait(WAIT_S)

    assert driver.run_concurrently([waits_for_three_ticks], POLL_S, on_tick) == [True]
    assert len(ticks) >= 3
    assert set(ticks) == {threading.current_thread().name}


def test_an_interrupt_raised_from_on_tick_sets_stopping_and_propagates(release):
    """A signal handler's KeyboardInterrupt arrives in the main thread, i.e. between joins."""
    started = threading.Event()

    def blocked():
        started.set()
        release.wait(WAIT_S)
        return "late"

    def on_tick():
        if started.is_set():
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        driver.run_concurrently([blocked], POLL_S, on_tick)
    assert driver.STOPPING.is_set()
    assert "member-0" in {t.name for t in threading.enumerate()}  # left running, not awaited


def test_each_call_runs_in_a_daemon_thread_named_after_its_index():
    seen: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def record():
        thread = threading.current_thread()
        with lock:
            seen.append((thread.name, thread.daemon))
        return thread is threading.main_thread()

    assert driver.run_concurrently([record, record], poll_s=POLL_S) == [False, False]
    assert sorted(seen) == [("member-0", True), ("member-1", True)]


def test_a_failure_of_the_last_call_to_end_also_sets_stopping():
    """Whichever way the first failure reaches the caller, STOPPING is set."""

    release = threading.Event()

    def slow_then_fail():
        release.wait(5)
        raise RuntimeError("last")

    def quick():
        release.set()
        return 1

    driver.STOPPING.clear()
    with pytest.raises(RuntimeError, match="last"):
        driver.run_concurrently([quick, slow_then_fail], poll_s=0.01)
    assert driver.STOPPING.is_set()
