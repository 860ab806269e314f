"""The camera contract: pacing, stamping, the threaded reader, lazy picamera2 (the spec: test_camera_spec.py)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from edgeface.camera import CameraError, CameraSpec, FrameSource
from edgeface.camera.base import DualFrame, Pacer, Stamper, ThreadedReader
from edgeface.camera.picamera_source import import_picamera2
from edgeface.types import Frame


def test_import_does_not_pull_in_picamera2() -> None:
    code = "import sys, edgeface.camera; print('picamera2' in sys.modules or 'libcamera' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_picamera2_says_how_to_install_it() -> None:
    if "picamera2" in sys.modules or _has_module("picamera2"):
        pytest.fail("this host has picamera2; the test expects a host without it")
    with pytest.raises(CameraError, match=r"picamera2 is not installed.*Raspberry Pi OS.*edgeface\[pi\]"):
        import_picamera2()


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_stamper_numbers_frames_and_uses_the_monotonic_clock() -> None:
    stamper = Stamper("door")
    image = np.zeros((4, 4, 3), np.uint8)
    before = time.monotonic()
    frames = [stamper.frame(image) for _ in range(5)]
    assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
    assert all(before <= a.ts <= b.ts <= time.monotonic() for a, b in itertools.pairwise(frames))
    assert {f.camera for f in frames} == {"door"}
    dual = stamper.frame(np.zeros((8, 16, 3), np.uint8), lores=np.zeros((4, 8, 3), np.uint8))
    assert isinstance(dual, DualFrame) and isinstance(dual, Frame)
    assert dual.lores_scale == (2.0, 2.0)


def test_pacer_without_realtime_never_waits() -> None:
    pacer = Pacer(1.0, realtime=False)
    assert all(pacer.wait(0.0) for _ in range(100))


def test_pacer_returns_false_when_the_next_frame_is_not_due_within_the_timeout() -> None:
    pacer = Pacer(2.0, realtime=True)  # one frame every 0.5 s
    assert pacer.wait(0.0)  # the first frame is due now
    assert not pacer.wait(0.01)  # the next one is ~0.5 s away
    assert pacer.wait(1.0)


def test_pacer_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="fps must be > 0"):
        Pacer(0.0, realtime=True)


def test_threaded_reader_hands_over_frames_and_raises_the_grab_error_as_camera_error() -> None:
    stamper = Stamper("cam0")
    count = 0

    def grab() -> Frame:
        nonlocal count
        count += 1
        if count > 3:
            raise OSError("device gone")
        return stamper.frame(np.zeros((2, 2, 3), np.uint8))

    released = threading.Event()
    reader = ThreadedReader(grab, "cam0", maxsize=8, drop_oldest=False, on_exit=released.set)
    seqs = [reader.read(2.0) for _ in range(3)]
    assert [f.seq for f in seqs if f is not None] == [0, 1, 2]
    with pytest.raises(CameraError, match="OSError: device gone"):
        reader.read(2.0)
    assert released.wait(2.0)
    with pytest.raises(CameraError, match="earlier failure"):
        reader.read(0.0)


def test_threaded_reader_drops_the_oldest_frames_when_the_consumer_is_slow() -> None:
    stamper = Stamper("cam0")
    reader = ThreadedReader(lambda: stamper.frame(np.zeros((2, 2, 3), np.uint8)), "cam0", maxsize=2)
    deadline = time.monotonic() + 5
    while reader.dropped < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    frame = reader.read(1.0)
    assert reader.stop()
    assert reader.dropped >= 10
    assert frame is not None and frame.seq >= 10  # a recent frame, not the first one


def test_threaded_reader_read_times_out_with_none() -> None:
    gate = threading.Event()

    def grab() -> Frame:
        gate.wait(5)
        return Stamper("cam0").frame(np.zeros((2, 2, 3), np.uint8))

    reader = ThreadedReader(grab, "cam0")
    assert reader.read(0.05) is None
    gate.set()
    assert reader.read(2.0) is not None
    reader.stop()


def test_emulated_source_satisfies_the_protocol() -> None:
    from edgeface.camera.emulated import EmulatedSource
    from edgeface.camera.scene import SceneSpec

    with EmulatedSource(SceneSpec(duration=1.0), realtime=False) as source:
        assert isinstance(source, FrameSource)


def test_open_source_fails_fast_when_picamera2_is_missing() -> None:
    from edgeface.camera import open_source

    with pytest.raises(CameraError, match="picamera2 is not installed"):
        open_source(CameraSpec(kind="picamera2"))  # reconnect=True would otherwise retry forever
