"""The frame queue drops the oldest frame when recognition falls behind; the capture thread feeds it."""

from __future__ import annotations

import threading
import time

from edgeface.camera import EndOfStream
from edgeface.camera.base import CameraError
from edgeface.pipeline.frames import CaptureThread, DropOldestQueue
from edgeface.types import Frame
from tests.factories import make_frame


def test_full_queue_drops_the_oldest_and_counts() -> None:
    queue = DropOldestQueue(3)
    for seq in range(5):
        queue.put(make_frame(ts=seq, seq=seq))
    assert len(queue) == 3 and queue.dropped == 2
    assert [queue.get(0.1).seq for _ in range(3)] == [2, 3, 4]  # type: ignore[union-attr]
    assert queue.get(0.01) is None


def test_get_waits_for_a_frame_until_its_timeout() -> None:
    queue = DropOldestQueue(2)
    started = time.monotonic()
    assert queue.get(0.2) is None
    assert time.monotonic() - started >= 0.15
    threading.Timer(0.05, queue.put, [make_frame(seq=7)]).start()
    frame = queue.get(5.0)
    assert frame is not None and frame.seq == 7


def test_close_wakes_a_waiting_reader_at_once() -> None:
    queue = DropOldestQueue(2)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(queue.get(600.0)), daemon=True)
    reader.start()
    time.sleep(0.1)  # let the reader start waiting
    queue.close()
    reader.join(60.0)  # far less than the reader's own timeout: only close() can have ended its wait
    assert not reader.is_alive() and got == [None]
    assert queue.closed


class ScriptedSource:
    """Delivers `count` frames (with a None gap first), then ends the way it is told to."""

    def __init__(self, count: int, end: Exception) -> None:
        self.name = "scripted"
        self._script: list[Frame | None] = [None, *(make_frame(ts=i, seq=i) for i in range(count))]
        self._end = end

    def read(self, timeout: float) -> Frame | None:
        if not self._script:
            raise self._end
        return self._script.pop(0)


def _run(source: ScriptedSource, size: int = 10) -> tuple[CaptureThread, DropOldestQueue]:
    frames = DropOldestQueue(size)
    thread = CaptureThread(source, frames, threading.Event())  # type: ignore[arg-type]
    thread.start()
    thread.join(5.0)
    assert not thread.is_alive()
    return thread, frames


def test_capture_feeds_every_frame_then_ends_on_end_of_stream() -> None:
    thread, frames = _run(ScriptedSource(4, EndOfStream("done")))
    assert thread.captured == 4 and thread.ended.is_set() and thread.error is None
    assert frames.closed and [frames.get(0.1).seq for _ in range(4)] == [0, 1, 2, 3]  # type: ignore[union-attr]


def test_capture_records_a_camera_failure() -> None:
    thread, frames = _run(ScriptedSource(2, CameraError("cam0: unplugged")))
    assert thread.error == "cam0: unplugged" and thread.ended.is_set() and frames.closed


def test_capture_stops_when_asked() -> None:
    class Endless:
        name = "endless"

        def read(self, timeout: float) -> Frame | None:
            time.sleep(0.01)
            return make_frame()

    stop = threading.Event()
    frames = DropOldestQueue(2)
    thread = CaptureThread(Endless(), frames, stop)  # type: ignore[arg-type]
    thread.start()
    time.sleep(0.1)
    stop.set()
    thread.join(5.0)
    assert not thread.is_alive() and thread.error is None and frames.dropped > 0
