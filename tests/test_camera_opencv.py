"""The OpenCV source: real cv2.VideoCapture on files, the emulated capture for device/URL/pipeline paths."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.camera import CameraError, CameraSpec, EndOfStream, open_source
from edgeface.camera.opencv_source import OpenCVSource
from edgeface.camera.scene import SceneSpec
from edgeface.camera.standins import EmulatedDevice, FaultPlan


def _frames(source, count: int) -> list:
    frames = []
    for _ in range(count * 20):
        frame = source.read(1.0)
        if frame is not None:
            frames.append(frame)
        if len(frames) == count:
            break
    return frames


def test_real_videocapture_reads_a_file_to_its_end(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (96, 64))
    for i in range(7):
        writer.write(np.full((64, 96, 3), (10 * i, 100, 200), np.uint8))
    writer.release()
    with OpenCVSource(path, "file", name="file") as source:
        frames = [source.read(1.0) for _ in range(7)]
        with pytest.raises(EndOfStream, match="has ended"):
            source.read(1.0)
    assert [f.seq for f in frames] == list(range(7))
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(frames))
    assert frames[3].image.shape == (64, 96, 3)
    assert abs(int(frames[3].image[:, :, 0].mean()) - 30) <= 4


def test_real_videocapture_on_a_missing_device_is_a_clear_error() -> None:
    with pytest.raises(CameraError, match=r"cannot open device /dev/video99.*video` group"):
        OpenCVSource("/dev/video99", "device")


@pytest.mark.parametrize(
    ("spec_kwargs", "kind", "target"),
    [
        ({"device": 2}, "device", 2),
        ({"device": "/dev/video1"}, "device", "/dev/video1"),
        ({"url": "rtsp://user:secret@10.0.0.5/stream"}, "url", "rtsp://user:secret@10.0.0.5/stream"),
        ({"pipeline": "nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink"},
         "pipeline", "nvarguscamerasrc ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink"),
    ],
)  # fmt: skip
def test_live_targets_run_through_the_capture_factory(spec_kwargs: dict, kind: str, target: object) -> None:
    device = EmulatedDevice(SceneSpec(width=320, height=240), fps=60.0)
    seen: list[tuple[object, int]] = []

    def factory(source: int | str, api: int):
        seen.append((source, api))
        return device.video_capture(source, api)

    spec = CameraSpec(kind="opencv", width=320, height=240, reconnect=False, **spec_kwargs)
    with open_source(spec, capture_factory=factory) as source:
        frames = _frames(source, 5)
    assert seen[0][0] == target
    expected_api = {"pipeline": cv2.CAP_GSTREAMER}.get(
        kind, cv2.CAP_V4L2 if kind == "device" else cv2.CAP_ANY
    )
    assert seen[0][1] == expected_api
    assert len(frames) == 5 and all(f.image.shape == (240, 320, 3) for f in frames)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))
    assert all(a.ts < b.ts for a, b in itertools.pairwise(frames))
    assert _released_soon(device)


def _released_soon(device: EmulatedDevice) -> bool:
    deadline = time.monotonic() + 3
    while device.open_handles and time.monotonic() < deadline:
        time.sleep(0.02)
    return device.open_handles == 0


def test_requested_mode_is_set_on_a_device() -> None:
    device = EmulatedDevice(SceneSpec(), fps=60.0)
    spec = CameraSpec(kind="opencv", device=0, width=320, height=240, reconnect=False)
    with open_source(spec, capture_factory=device.video_capture) as source:
        frame = _frames(source, 1)[0]
    assert frame.image.shape == (240, 320, 3)  # the emulated driver honours the requested size


def test_stream_that_ends_raises_camera_error_without_reconnect() -> None:
    device = EmulatedDevice(SceneSpec(), fps=100.0, faults=FaultPlan(fail_after=3))
    spec = CameraSpec(kind="opencv", url="rtsp://cam/stream", reconnect=False)
    source = open_source(spec, capture_factory=device.video_capture)
    got = 0
    with pytest.raises(CameraError, match=r"url rtsp://cam/stream delivered no frame"):
        for _ in range(100):
            got += source.read(1.0) is not None
    source.close()
    assert 1 <= got <= 3


def test_url_passwords_are_not_in_error_messages() -> None:
    device = EmulatedDevice(SceneSpec(), faults=FaultPlan(failed_opens=1))
    with pytest.raises(CameraError) as error:
        OpenCVSource("rtsp://admin:hunter2@cam/stream", "url", capture_factory=device.video_capture)
    assert "hunter2" not in str(error.value) and "admin:***@cam" in str(error.value)


def test_stable_v4l2_paths_use_the_v4l2_backend() -> None:
    device = EmulatedDevice(SceneSpec(), fps=60.0)
    apis = []

    def factory(source: int | str, api: int):
        apis.append(api)
        return device.video_capture(source, api)

    path = "/dev/v4l/by-id/usb-Logitech_C920-video-index0"
    with OpenCVSource(path, "device", capture_factory=factory) as source:
        assert _frames(source, 1)
    assert apis == [cv2.CAP_V4L2]
