"""Bounds on what a flood of junk messages can make the device write: log lines and retained state.

`LogLimiter` lets at most `per_window` lines through per window and then logs one summary line with the
number it suppressed. `StateThrottle` publishes a retained state only when it differs from the last one
published (timestamps aside), and beyond a small burst at most one per `interval_s`: the newest state wins,
and the last one is always published (a trailing timer), so the retained state ends up correct.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

Clock = Callable[[], float]


class LogLimiter:
    """At most `per_window` log lines per `window_s`; then one "suppressed N" line when the window ends."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        per_window: int = 10,
        window_s: float = 60.0,
        what: str = "messages",
        clock: Clock = time.monotonic,
    ) -> None:
        self._logger, self._level, self._what = logger, level, what
        self._per_window, self._window_s, self._clock = per_window, window_s, clock
        self._lock = threading.Lock()
        self._started = clock()
        self._count = 0
        self._suppressed = 0
        self._timer: threading.Timer | None = None

    def log(self, message: str, *args: object) -> bool:
        """Log like `logger.log(level, message, *args)` unless over the limit; True if it was logged."""
        with self._lock:
            self._roll()
            if self._count >= self._per_window:
                self._suppressed += 1
                if self._timer is None:
                    left = max(0.0, self._started + self._window_s - self._clock())
                    self._timer = threading.Timer(left + 0.01, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
                return False
            self._count += 1
        self._logger.log(self._level, message, *args)
        return True

    def _roll(self) -> None:
        if self._clock() - self._started >= self._window_s:
            self._summary()
            self._started, self._count = self._clock(), 0

    def _summary(self) -> None:
        if self._suppressed:
            self._logger.log(
                self._level,
                "suppressed %d similar %s in the last %g s",
                self._suppressed,
                self._what,
                self._window_s,
            )
            self._suppressed = 0

    def flush(self) -> None:
        """Log the pending "suppressed" summary now (the window timer and `close` call this)."""
        with self._lock:
            self._timer = None
            self._summary()
            self._started, self._count = self._clock(), 0

    def close(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()


def _same(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    return a is not None and {k: v for k, v in a.items() if k != "ts"} == {
        k: v for k, v in b.items() if k != "ts"
    }


class StateThrottle:
    """Publishes retained state changes only, `burst` at once and then one per `interval_s` (newest wins)."""

    def __init__(
        self,
        publish: Callable[[Mapping[str, Any]], None],
        burst: int = 5,
        interval_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._publish, self._burst, self._interval, self._clock = publish, burst, interval_s, clock
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._refilled = clock()
        self._sent: Mapping[str, Any] | None = None
        self._pending: Mapping[str, Any] | None = None
        self._timer: threading.Timer | None = None
        self.published = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) / self._interval)
        self._refilled = now

    def offer(self, state: Mapping[str, Any]) -> None:
        """Publish `state` now, later (coalesced with newer ones), or not at all if nothing changed."""
        with self._lock:
            if self._pending is None and _same(self._sent, state):
                return
            self._refill()
            if self._tokens >= 1 and self._pending is None:
                self._send(state)
                return
            self._pending = state
            if self._timer is None:
                wait = max(0.0, (1 - self._tokens) * self._interval)
                self._timer = threading.Timer(wait + 0.001, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def force(self, state: Mapping[str, Any]) -> None:
        """Publish now whatever the budget (after a reconnect the retained state must be re-asserted)."""
        with self._lock:
            self._pending = None
            self._send(state)

    def _send(self, state: Mapping[str, Any]) -> None:  # with the lock held: keeps publishes in order
        self._tokens = max(0.0, self._tokens - 1)
        self._sent = state
        self.published += 1
        self._publish(state)

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            state, self._pending = self._pending, None
            if state is None or _same(self._sent, state):
                return
            self._refill()
            self._send(state)

    def close(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._on_timer()
