"""`LogLimiter` and `StateThrottle` (edgeface/sync/throttle.py) on a scripted clock.

`test_sync_flood.py` floods a real device and checks the totals, plus one scenario of each class; here the
rules one by one: windows roll, the summary comes by timer or on close, the token bucket refills with time,
`ts` is ignored when comparing states, the newest pending state wins and `force` skips the budget.
"""

from __future__ import annotations

import logging

import pytest

from edgeface.sync.throttle import LogLimiter, StateThrottle
from tests.factories import wait_for

LOGGER = "edgeface.test.throttle"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


# --- LogLimiter ------------------------------------------------------------------------------------------
def test_each_window_lets_its_own_quota_through(caplog) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = Clock()
    limiter = LogLimiter(logging.getLogger(LOGGER), per_window=2, window_s=10, clock=clock)
    try:
        assert [limiter.log("a%d", n) for n in range(2)] == [True, True]
        clock.now += 10  # a new window, nothing was suppressed: no summary line
        assert [limiter.log("b%d", n) for n in range(3)] == [True, True, False]
        assert messages(caplog) == ["a0", "a1", "b0", "b1"]
    finally:
        limiter.close()
    assert messages(caplog)[-1] == "suppressed 1 similar messages in the last 10 s"


def test_the_summary_comes_when_the_window_ends_without_another_line(caplog) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = Clock()
    limiter = LogLimiter(logging.getLogger(LOGGER), per_window=1, window_s=30, what="rejections", clock=clock)
    try:
        assert limiter.log("first")
        clock.now += 29.99  # near the window's end: the summary timer is due in 0.01 s
        assert not limiter.log("second")
        wait_for(lambda: len(messages(caplog)) == 2, 2, "timer summary")
        assert messages(caplog) == ["first", "suppressed 1 similar rejections in the last 30 s"]
    finally:
        limiter.close()
    assert len(messages(caplog)) == 2  # nothing left to report


def test_the_level_is_the_limiters(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    limiter = LogLimiter(logging.getLogger(LOGGER), level=logging.ERROR, per_window=1, clock=Clock())
    limiter.log("x")
    limiter.log("y")
    limiter.close()
    assert [r.levelno for r in caplog.records if r.name == LOGGER] == [logging.ERROR, logging.ERROR]


# --- StateThrottle ------------------------------------------------------------------------------------------
def test_only_changes_are_published_and_the_timestamp_is_not_a_change() -> None:
    sent: list[dict] = []
    throttle = StateThrottle(sent.append, burst=5, clock=Clock())
    throttle.offer({"status": "applied", "version": 1, "ts": "t1"})
    throttle.offer({"status": "applied", "version": 1, "ts": "t2"})
    throttle.offer({"status": "applied", "version": 2, "ts": "t3"})
    throttle.offer({"status": "applied", "version": 1, "ts": "t4"})  # a change back is a change
    assert [s["ts"] for s in sent] == ["t1", "t3", "t4"] and throttle.published == 3
    throttle.close()


def test_the_budget_refills_one_state_per_interval() -> None:
    sent: list[dict] = []
    clock = Clock()
    throttle = StateThrottle(sent.append, burst=2, interval_s=60.0, clock=clock)
    for n in range(2):
        throttle.offer({"n": n})
    assert len(sent) == 2
    clock.now += 30  # half a token: still none to spend
    throttle.offer({"n": 2})
    assert len(sent) == 2
    throttle.close()  # the pending state is flushed on close
    assert [s["n"] for s in sent] == [0, 1, 2]


def test_a_refilled_token_publishes_at_once() -> None:
    sent: list[dict] = []
    clock = Clock()
    throttle = StateThrottle(sent.append, burst=1, interval_s=60.0, clock=clock)
    throttle.offer({"n": 0})
    clock.now += 60
    throttle.offer({"n": 1})
    assert [s["n"] for s in sent] == [0, 1]
    throttle.close()


def test_the_newest_pending_state_wins_and_the_timer_publishes_it() -> None:
    sent: list[dict] = []
    throttle = StateThrottle(sent.append, burst=1, interval_s=0.1)
    throttle.offer({"n": 0})
    for n in range(1, 20):
        throttle.offer({"n": n})
    assert len(sent) == 1
    wait_for(lambda: len(sent) == 2, 2, "trailing publish")
    assert sent[-1] == {"n": 19}
    throttle.close()
    assert len(sent) == 2


def test_a_pending_state_equal_to_the_published_one_is_dropped() -> None:
    sent: list[dict] = []
    throttle = StateThrottle(sent.append, burst=1, interval_s=60.0, clock=Clock())
    throttle.offer({"status": "applied", "ts": "1"})
    throttle.offer({"status": "rejected", "ts": "2"})  # pending
    throttle.offer({"status": "applied", "ts": "3"})  # replaces it, and is what is already retained
    throttle.close()
    assert [s["ts"] for s in sent] == ["1"]


def test_force_publishes_beyond_the_budget_and_clears_what_was_pending() -> None:
    sent: list[dict] = []
    throttle = StateThrottle(sent.append, burst=1, interval_s=60.0, clock=Clock())
    throttle.offer({"n": 0})
    throttle.offer({"n": 1})  # pending: no budget
    throttle.force({"n": 0})  # after a reconnect: re-asserted even though unchanged
    throttle.close()
    assert [s["n"] for s in sent] == [0, 0] and throttle.published == 2
