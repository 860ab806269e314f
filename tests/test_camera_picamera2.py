"""The picamera2 source against the EmulatedPicamera2 stand-in: streams, colour order, released requests."""

from __future__ import annotations

import itertools
import time

import cv2
import numpy as np
import pytest

from edgeface.camera import CameraError, CameraSpec, DualFrame, open_source
from edgeface.camera.picamera_source import Picamera2Source
from edgeface.camera.scene import Scene, SceneSpec
from edgeface.camera.standins import EmulatedDevice, EmulatedPicamera2, FaultPlan

STATIC = SceneSpec(width=640, height=480, seed=3)  # no actors, no noise: every frame is the background


def _frames(source, count: int) -> list:
    frames = []
    deadline = time.monotonic() + 10
    while len(frames) < count and time.monotonic() < deadline:
        frame = source.read(1.0)
        if frame is not None:
            frames.append(frame)
    return frames


def _wait_closed(device: EmulatedDevice) -> bool:
    deadline = time.monotonic() + 3
    while device.open_handles and time.monotonic() < deadline:
        time.sleep(0.02)
    return device.open_handles == 0


class Recorder:
    """Keeps every stand-in the source creates, to inspect its requests afterwards."""

    def __init__(self, device: EmulatedDevice, platform: str = "pisp") -> None:
        self.device = device
        self.platform = platform
        self.cameras: list[EmulatedPicamera2] = []

    def __call__(self, camera_num: int) -> EmulatedPicamera2:
        camera = self.device.picamera2(camera_num, self.platform)
        self.cameras.append(camera)
        return camera


@pytest.mark.parametrize(("platform", "lores_format"), [("pisp", "RGB888"), ("vc4", "YUV420")])
def test_main_and_lores_streams_in_bgr_order(platform: str, lores_format: str) -> None:
    device = EmulatedDevice(STATIC, fps=60.0)
    recorder = Recorder(device, platform)
    with Picamera2Source(0, (640, 480), (320, 240), 30.0, "door", factory=recorder) as source:
        frames = _frames(source, 6)
        assert source.lores_format == lores_format
    camera = recorder.cameras[0]
    assert camera.camera_config["main"] == {"format": "RGB888", "size": (640, 480)}
    background = Scene(STATIC).background
    for frame in frames:
        assert isinstance(frame, DualFrame) and frame.camera == "door"
        assert frame.image.shape == (480, 640, 3) and frame.lores.shape == (240, 320, 3)
        assert np.array_equal(frame.image, background)  # RGB888 is BGR in memory: no swap
        small = cv2.resize(background, (320, 240), interpolation=cv2.INTER_AREA)
        assert np.abs(frame.lores.astype(int) - small.astype(int)).mean() < 3  # YUV420 round trip
        assert frame.lores_scale == (2.0, 2.0)
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert all(a.ts < b.ts for a, b in itertools.pairwise(frames))
    assert _wait_closed(device)
    assert camera.requests >= len(frames) and camera.outstanding == 0  # every request released


def test_every_request_is_released_even_when_make_array_fails() -> None:
    device = EmulatedDevice(STATIC, fps=200.0)
    recorder = Recorder(device)
    with Picamera2Source(0, (640, 480), None, 30.0, factory=recorder) as source:
        assert len(_frames(source, 20)) == 20
        source.lores_format = "RGB888"  # now asks for a stream that is not configured
        with pytest.raises(CameraError, match="lores"):
            _frames(source, 1)
    camera = recorder.cameras[0]
    assert _wait_closed(device)
    assert camera.outstanding == 0 and camera.requests >= 21


def test_open_source_builds_the_picamera2_source_from_a_spec() -> None:
    device = EmulatedDevice(STATIC, fps=60.0)
    spec = CameraSpec(kind="picamera2", device=0, width=640, height=480, lores_width=320, reconnect=False)
    with open_source(spec, picamera2_factory=device.picamera2) as source:
        frame = _frames(source, 1)[0]
    assert frame.lores is not None and frame.lores.shape == (240, 320, 3)


def test_unplugged_camera_is_a_camera_error_naming_the_camera() -> None:
    device = EmulatedDevice(STATIC, faults=FaultPlan(failed_opens=1))
    with pytest.raises(
        CameraError, match=r"camera door: cannot open Raspberry Pi camera 0.*ribbon cable.*list-cameras"
    ):
        Picamera2Source(0, name="door", factory=device.picamera2)


def test_driver_error_mid_stream_surfaces_as_camera_error() -> None:
    device = EmulatedDevice(STATIC, fps=100.0, faults=FaultPlan(fail_after=4, mode="raise"))
    with Picamera2Source(0, factory=device.picamera2) as source:
        got = []
        with pytest.raises(CameraError, match="EmulatedFault: emulated camera: driver error after 4 frames"):
            for _ in range(50):
                frame = source.read(1.0)
                if frame is not None:
                    got.append(frame)
    assert 1 <= len(got) <= 4
    assert _wait_closed(device)


def test_stand_in_refuses_rgb_lores_on_vc4_and_held_buffers() -> None:
    device = EmulatedDevice(STATIC, realtime=False)
    camera = device.picamera2(0, platform="vc4")
    config = camera.create_video_configuration(
        main={"size": (640, 480), "format": "RGB888"}, lores={"size": (320, 240), "format": "RGB888"}
    )
    with pytest.raises(RuntimeError, match="lores stream must be YUV"):
        camera.configure(config)
    camera.configure(camera.create_preview_configuration(main={"size": (320, 240)}, buffer_count=2))
    camera.start()
    held = [camera.capture_request(), camera.capture_request()]
    with pytest.raises(RuntimeError, match="all buffers are held"):
        camera.capture_request()
    assert held[0].make_array("main").shape == (240, 320, 4)  # XBGR8888 default
    for request in held:
        request.release()
    camera.close()
    assert device.open_handles == 0


def test_yuv420_lores_with_padded_stride_is_cropped_to_its_width() -> None:
    device = EmulatedDevice(STATIC, fps=60.0)
    with Picamera2Source(0, (640, 480), (200, 150), factory=Recorder(device, "vc4")) as source:
        frame = _frames(source, 1)[0]
        assert source.lores_format == "YUV420"
    small = cv2.resize(Scene(STATIC).background, (200, 150), interpolation=cv2.INTER_AREA)
    assert frame.lores.shape == (150, 200, 3)  # stride 256 in the buffer
    assert np.abs(frame.lores.astype(int) - small.astype(int)).mean() < 3
