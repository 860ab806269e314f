"""Capture thread and a bounded frame queue that drops the oldest frame when recognition falls behind."""

from __future__ import annotations

import logging
import threading
from collections import deque

from edgeface.camera import EndOfStream, FrameSource
from edgeface.errors import EdgefaceError
from edgeface.types import Frame

log = logging.getLogger(__name__)


class DropOldestQueue:
    """A bounded FIFO: `put` never blocks; when full the oldest frame is discarded and counted."""

    def __init__(self, maxsize: int) -> None:
        self._frames: deque[Frame] = deque()
        self._maxsize = maxsize
        self._ready = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, frame: Frame) -> None:
        with self._ready:
            if len(self._frames) >= self._maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._ready.notify()

    def get(self, timeout: float) -> Frame | None:
        with self._ready:
            if not self._frames and not self.closed:
                self._ready.wait(timeout)
            return self._frames.popleft() if self._frames else None

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._frames)


class CaptureThread(threading.Thread):
    """Reads the camera as fast as it delivers and feeds the queue; ends on stop or end of stream."""

    def __init__(self, source: FrameSource, frames: DropOldestQueue, stop: threading.Event) -> None:
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.frames = frames
        self.stop = stop
        self.captured = 0
        self.ended = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                frame = self.source.read(timeout=0.5)
                if frame is not None:
                    self.captured += 1
                    self.frames.put(frame)
        except EndOfStream:
            log.info("camera %s: end of stream", self.source.name)
        except EdgefaceError as exc:
            self.error = str(exc)
            log.error("camera %s failed: %s", self.source.name, exc)
        finally:
            self.ended.set()
            self.frames.close()
