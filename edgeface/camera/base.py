"""The camera contract: `FrameSource.read(timeout) -> Frame | None`, errors, and shared helpers.

Every source stamps frames with `time.monotonic()` at capture and a per-source increasing `seq`.
Live sources read in a background thread (`ThreadedReader`), so `read(timeout)` honours its timeout even
when the underlying library call blocks (a stalled RTSP stream, an unplugged USB camera).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.types import Frame

log = logging.getLogger(__name__)


class CameraError(EdgefaceError):
    """A camera cannot be opened or stopped delivering frames; the message names the camera and the cause."""


class EndOfStream(CameraError):
    """A finite source (video file, image folder, scripted scene) has no more frames. Not transient."""


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """A snapshot for status and metrics."""

    name: str
    connected: bool
    frames: int
    reconnects: int  # successful reopens after a loss
    failures: int  # failed opens and lost streams
    last_error: str | None
    dropped: int  # frames the inner sources dropped because the reader was behind


@runtime_checkable
class FrameSource(Protocol):
    """Anything that yields camera frames. `read` returns None when no frame arrived within `timeout` s."""

    name: str

    def read(self, timeout: float) -> Frame | None: ...

    def status(self) -> CameraStatus | None:
        """Connection health, for sources that reconnect; None for sources that cannot lose a device."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


# A frame with a low-resolution copy is a plain `Frame` with `lores` set (kept as a name for callers).
DualFrame = Frame


class SourceBase:
    """Context-manager plumbing shared by the sources: `with source: ...` closes it."""

    def status(self) -> CameraStatus | None:
        return None

    name: str = "cam0"

    def read(self, timeout: float) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Pacer:
    """Frame schedule at `fps`: `wait(timeout)` sleeps until the next frame is due (if `realtime`).

    Returns False when the next frame is not due within `timeout` (the caller returns None). When the
    consumer falls more than one period behind, the schedule restarts from now instead of bursting.
    """

    def __init__(self, fps: float, realtime: bool, clock: Callable[[], float] = time.monotonic) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self.realtime = realtime
        self._clock = clock
        self._due: float | None = None

    def wait(self, timeout: float) -> bool:
        if not self.realtime:
            return True
        now = self._clock()
        if self._due is None or now - self._due > self.period:
            self._due = now
        delay = self._due - now
        if delay > timeout:
            time.sleep(max(0.0, timeout))
            return False
        if delay > 0:
            time.sleep(delay)
        self._due += self.period
        return True


class Stamper:
    """Turns pixels into Frames with a monotonic capture time and an increasing sequence number."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._seq = 0
        self._lock = threading.Lock()

    def next_seq(self) -> int:
        with self._lock:
            seq = self._seq
            self._seq += 1
            return seq

    def frame(self, image: np.ndarray, lores: np.ndarray | None = None, ts: float | None = None) -> Frame:
        stamp = time.monotonic() if ts is None else ts
        if lores is not None:
            return DualFrame(image, stamp, self.next_seq(), self.camera, lores)
        return Frame(image, stamp, self.next_seq(), self.camera)


class ThreadedReader:
    """Runs a blocking `grab() -> Frame` in a daemon thread and hands frames over through a bounded queue.

    `drop_oldest=True` (live cameras): a full queue discards its oldest frame and counts it in `dropped`,
    so `read` always gets a fresh frame and memory never grows. `drop_oldest=False` (files): the thread
    waits for the consumer. An exception raised by `grab` is re-raised by the next `read` (as CameraError).
    `on_exit` runs in the reader thread after its last `grab`, so a device is never released mid-call.
    """

    def __init__(
        self,
        grab: Callable[[], Frame],
        name: str,
        maxsize: int = 2,
        drop_oldest: bool = True,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self._grab = grab
        self._on_exit = on_exit
        self.name = name
        self.dropped = 0
        self._drop_oldest = drop_oldest
        self._queue: queue.Queue[Frame | BaseException] = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._run, name=f"camera-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    item: Frame | BaseException = self._grab()
                except BaseException as exc:  # handed to the consumer, which decides
                    item = exc
                self._put(item)
                if isinstance(item, BaseException):
                    return
        finally:
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("camera %s: error while releasing the device", self.name)

    def _put(self, item: Frame | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                if self._drop_oldest and not isinstance(item, BaseException):
                    self._discard_oldest()

    def _discard_oldest(self) -> None:
        try:
            self._queue.get_nowait()
            self.dropped += 1
        except queue.Empty:
            pass

    def read(self, timeout: float) -> Frame | None:
        if self._failed:
            raise CameraError(f"camera {self.name}: reader stopped after an earlier failure")
        try:
            item = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            self._failed = True
            if isinstance(item, CameraError):
                raise item
            raise CameraError(f"camera {self.name}: {type(item).__name__}: {item}") from item
        return item

    def stop(self, join_timeout: float = 0.5) -> bool:
        """Ask the thread to stop; True if it ended (a thread stuck in a driver call is left behind)."""
        self._stop.set()
        self._thread.join(join_timeout)
        alive = self._thread.is_alive()
        if alive:
            log.warning(
                "camera %s: capture thread still blocked after %.1f s; leaving it", self.name, join_timeout
            )
        return not alive
