"""A failing camera (unplugged, stream ends, driver raises, read hangs) reconnects; status shows it."""

from __future__ import annotations

import itertools
import random
import time

import pytest

from edgeface.camera import Backoff, CameraError, CameraSpec, EndOfStream, ReconnectingSource, open_source
from edgeface.camera.emulated import EmulatedSource
from edgeface.camera.scene import SceneSpec
from edgeface.camera.standins import EmulatedDevice, FaultPlan

FAST = {"backoff_initial_s": 0.02, "backoff_max_s": 0.1, "stall_timeout_s": 0.3}


def _collect(source, count: int, seconds: float = 15.0) -> list:
    frames = []
    deadline = time.monotonic() + seconds
    while len(frames) < count and time.monotonic() < deadline:
        frame = source.read(0.2)  # must never raise for these transient failures
        if frame is not None:
            frames.append(frame)
    return frames


def _check_continuous(frames: list) -> None:
    assert [f.seq for f in frames] == list(range(len(frames)))  # renumbered across reconnects
    assert all(a.ts < b.ts for a, b in itertools.pairwise(frames))


@pytest.mark.parametrize("mode", ["eof", "raise", "hang"])
def test_opencv_camera_failing_mid_stream_reconnects(mode: str) -> None:
    faults = FaultPlan(fail_after=5, mode=mode, faulty_sessions=2, hang_s=1.0)
    device = EmulatedDevice(SceneSpec(width=160, height=120), fps=50.0, faults=faults)
    spec = CameraSpec(kind="opencv", device=0, name="door", width=160, height=120, **FAST)
    source = open_source(spec, capture_factory=device.video_capture)
    assert isinstance(source, ReconnectingSource)
    with source:
        frames = _collect(source, 15)
        status = source.status()
    assert len(frames) == 15
    _check_continuous(frames)
    assert status.connected and status.frames == 15
    assert status.reconnects == 2 and status.failures == 2
    expected = {"eof": "delivered no frame", "raise": "EmulatedFault", "hang": "stalled"}[mode]
    assert expected in (status.last_error or "")
    assert device.sessions == 3


def test_unplugged_camera_is_retried_with_backoff_until_it_appears() -> None:
    device = EmulatedDevice(SceneSpec(width=160, height=120), fps=50.0, faults=FaultPlan(failed_opens=3))
    spec = CameraSpec(kind="picamera2", device=0, width=160, height=120, lores_width=80, **FAST)
    with open_source(spec, picamera2_factory=device.picamera2) as source:
        assert source.read(0.01) is None
        status = source.status()
        assert not status.connected and status.failures == 1
        assert "not found (unplugged)" in (status.last_error or "")
        frames = _collect(source, 5)
        status = source.status()
    assert len(frames) == 5
    _check_continuous(frames)
    assert device.opens == 4 and status.failures == 3
    assert status.connected and status.reconnects == 0  # the first successful open is not a reconnect


def test_picamera2_source_reconnects_after_a_driver_error_and_releases_everything() -> None:
    device = EmulatedDevice(
        SceneSpec(width=160, height=120), fps=50.0, faults=FaultPlan(fail_after=3, mode="raise")
    )
    cameras = []

    def factory(camera_num: int):
        cameras.append(device.picamera2(camera_num))
        return cameras[-1]

    spec = CameraSpec(kind="picamera2", width=160, height=120, lores_width=80, **FAST)
    with open_source(spec, picamera2_factory=factory) as source:
        frames = _collect(source, 10)
        status = source.status()
    assert len(frames) == 10
    _check_continuous(frames)
    assert status.reconnects >= 3
    deadline = time.monotonic() + 3
    while device.open_handles and time.monotonic() < deadline:
        time.sleep(0.02)
    assert device.open_handles == 0
    assert all(c.outstanding == 0 for c in cameras)


def test_read_waits_for_the_backoff_and_returns_none_meanwhile() -> None:
    attempts = []

    def opener():
        attempts.append(time.monotonic())
        raise CameraError("camera cam0: unplugged")

    source = ReconnectingSource(opener, backoff=Backoff(initial=0.2, maximum=0.2, jitter=0.0))
    start = time.monotonic()
    while time.monotonic() - start < 0.9:
        assert source.read(0.05) is None
    assert 3 <= len(attempts) <= 6  # one try every 0.2 s, not one per read
    status = source.status()
    assert not status.connected and status.failures == len(attempts)
    assert status.last_error == "camera cam0: unplugged"
    source.close()


def test_backoff_grows_is_bounded_and_jittered() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0, factor=2.0, jitter=0.2)
    rng = random.Random(1)
    delays = [backoff.delay(n, rng) for n in range(1, 12)]
    assert 0.4 <= delays[0] <= 0.6
    assert delays[3] > delays[1] > delays[0]
    assert all(d <= 8.0 for d in delays)
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter: not all equal at the cap


def test_end_of_a_finite_source_is_not_hidden() -> None:
    def opener():
        return EmulatedSource(SceneSpec(duration=0.2), fps=10.0, realtime=False)

    source = ReconnectingSource(opener)
    frames = [source.read(1.0) for _ in range(2)]
    assert all(f is not None for f in frames)
    with pytest.raises(EndOfStream):
        source.read(1.0)


def test_read_after_close_is_an_error() -> None:
    source = ReconnectingSource(lambda: EmulatedSource(SceneSpec(), realtime=False))
    assert source.read(1.0) is not None
    source.close()
    with pytest.raises(CameraError, match="read after close"):
        source.read(0.1)


def test_camera_unplugged_at_runtime_comes_back_when_plugged_in() -> None:
    device = EmulatedDevice(SceneSpec(width=160, height=120), fps=50.0)
    spec = CameraSpec(kind="opencv", device="/dev/video0", width=160, height=120, **FAST)
    with open_source(spec, capture_factory=device.video_capture) as source:
        assert len(_collect(source, 5)) == 5
        device.unplug()
        deadline = time.monotonic() + 5
        while source.status().connected and time.monotonic() < deadline:
            source.read(0.1)
        down = source.status()
        for _ in range(5):
            assert source.read(0.05) is None  # still unplugged: no frames, no exception
        device.plug()
        frames = _collect(source, 5)
        up = source.status()
    assert not down.connected and "delivered no frame" in (down.last_error or "")
    assert len(frames) == 5 and frames[0].seq == down.frames  # numbering continues after the outage
    assert up.connected and up.reconnects == 1 and up.failures >= 2 and up.frames == down.frames + 5
