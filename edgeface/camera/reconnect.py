"""A source that survives its camera: reopens with bounded, jittered exponential back-off.

`read` never raises for a transient failure (open fails, driver error, stream ends, no frame for
`stall_timeout` s); it returns None while reconnecting and the status says why. A finite source's
EndOfStream is not transient and is passed on. Frames are re-numbered so `seq` keeps increasing across
reconnects; `ts` stays the capture time.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edgeface.camera.base import CameraError, CameraStatus, EndOfStream, FrameSource, SourceBase
from edgeface.types import Frame

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # +- this fraction, so a fleet does not reconnect in lockstep

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return min(self.maximum, base * rng.uniform(1 - self.jitter, 1 + self.jitter))


class ReconnectingSource(SourceBase):
    """Wraps `opener() -> FrameSource`; the first open happens on the first `read`."""

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        name: str = "cam0",
        backoff: Backoff | None = None,
        stall_timeout: float = 5.0,
        seed: int | None = None,
    ) -> None:
        self.name = name
        self._opener = opener
        self.backoff = backoff or Backoff()
        self.stall_timeout = stall_timeout
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._inner: FrameSource | None = None
        self._ever_connected = False
        self._attempt = 0  # consecutive failures since the last frame
        self._next_try = 0.0
        self._last_frame = 0.0
        self._seq = 0
        self._closed = False
        self._dropped_before = 0
        self.connected = False
        self.frames = 0
        self.reconnects = 0
        self.failures = 0
        self.last_error: str | None = None

    def status(self) -> CameraStatus:
        with self._lock:
            dropped = self._dropped_before + int(getattr(self._inner, "dropped", 0))
            return CameraStatus(
                self.name,
                self.connected,
                self.frames,
                self.reconnects,
                self.failures,
                self.last_error,
                dropped,
            )

    def read(self, timeout: float) -> Frame | None:
        if self._closed:
            raise CameraError(f"camera {self.name}: read after close")
        deadline = time.monotonic() + max(0.0, timeout)
        if self._inner is None and not self._try_open(deadline):
            return None
        inner = self._inner
        if inner is None:
            return None
        try:
            frame = inner.read(max(0.0, deadline - time.monotonic()))
        except EndOfStream:
            raise
        except CameraError as exc:
            self._lose(str(exc))
            return None
        now = time.monotonic()
        if frame is None:
            if now - self._last_frame > self.stall_timeout:
                self._lose(f"camera {self.name}: no frame for {now - self._last_frame:.1f} s (stalled)")
            return None
        return self._accept(frame, now)

    def _accept(self, frame: Frame, now: float) -> Frame:
        with self._lock:
            self._last_frame = now
            self._attempt = 0
            self.frames += 1
            seq = self._seq
            self._seq += 1
        return dataclasses.replace(frame, seq=seq, camera=self.name)

    def _try_open(self, deadline: float) -> bool:
        now = time.monotonic()
        if now < self._next_try:
            time.sleep(max(0.0, min(self._next_try, deadline) - now))
            if time.monotonic() < self._next_try:
                return False
        try:
            inner = self._opener()
        except EndOfStream:
            raise
        except CameraError as exc:
            self._fail(str(exc))
            return False
        with self._lock:
            self._inner = inner
            self.connected = True
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self._last_frame = time.monotonic()  # the stall clock starts at open
        log.info(
            "camera %s: connected%s", self.name, f" (reconnect #{self.reconnects})" if self.reconnects else ""
        )
        return True

    def _lose(self, error: str) -> None:
        inner = self._inner
        with self._lock:
            self._inner = None
            self.connected = False
            self._dropped_before += int(getattr(inner, "dropped", 0))
        if inner is not None:
            try:
                inner.close()
            except Exception as exc:
                log.warning("camera %s: error closing the failed source: %s", self.name, exc)
        self._fail(error)

    def _fail(self, error: str) -> None:
        with self._lock:
            self.failures += 1
            self._attempt += 1
            self.last_error = error
            delay = self.backoff.delay(self._attempt, self._rng)
            self._next_try = time.monotonic() + delay
        log.warning("%s; retrying in %.1f s", error, delay)

    def close(self) -> None:
        self._closed = True
        inner, self._inner = self._inner, None
        self.connected = False
        if inner is not None:
            inner.close()
