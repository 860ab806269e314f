"""`CameraSpec`, the `[camera]` section: limits, combinations, the digit device, the lores size."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeface.camera.spec import CameraSpec
from edgeface.errors import ConfigError


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "webcam"}, r"camera\.kind: must be one of"),
        ({"kind": "opencv"}, r"exactly one of device, url, pipeline, path; got none"),
        ({"kind": "opencv", "device": 0, "url": "rtsp://x"}, r"exactly one of .* got \['device', 'url'\]"),
        ({"kind": "opencv", "pipeline": "videotestsrc ! fakesink"}, r"camera\.pipeline: .*appsink"),
        ({"kind": "replay"}, r"camera\.path: replay needs"),
        ({"kind": "emulated"}, r"camera\.faces: the emulated camera needs"),
        ({"kind": "emulated", "faces": ".", "fps": 0}, r"camera\.fps: must be in \(0, 240\]"),
        ({"kind": "picamera2", "device": "/dev/video0"}, r"camera\.device: picamera2 takes a camera number"),
        ({"kind": "picamera2", "lores_width": 800}, r"camera\.lores_width: must be in \[0, width=640\]"),
        ({"kind": "picamera2", "name": "a/b"}, r"camera\.name: must be non-empty"),
        ({"kind": "picamera2", "backoff_initial_s": 60}, r"camera\.backoff_initial_s: must be > 0 and <="),
    ],
)
def test_camera_spec_errors_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CameraSpec(**kwargs)


def test_camera_spec_lores_keeps_the_main_aspect_and_even_sizes() -> None:
    assert CameraSpec(kind="picamera2", width=1280, height=720, lores_width=320).lores_size == (320, 180)
    assert CameraSpec(kind="picamera2", width=640, height=480).lores_size == (320, 240)
    assert CameraSpec(kind="picamera2", lores_width=0).lores_size is None


def test_a_digit_device_is_a_v4l2_index_and_a_path_stays_a_path() -> None:
    assert CameraSpec(kind="opencv", device="0").device == 0
    assert CameraSpec(kind="opencv", device="/dev/video2").device == "/dev/video2"
    assert CameraSpec(kind="picamera2", device="1").device == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "picamera2", "width": 8193}, r"camera\.width: must be in \[16, 8192\], got 8193"),
        ({"kind": "picamera2", "height": 15}, r"camera\.height: must be in \[16, 8192\], got 15"),
        ({"kind": "picamera2", "stall_timeout_s": 0.0}, r"camera\.stall_timeout_s: must be in \(0, 600\]"),
        ({"kind": "picamera2", "max_megapixels": 0.0}, r"camera\.max_megapixels: must be in \[0\.01, 1000\]"),
        ({"kind": "picamera2", "backoff_max_s": 0.0}, r"camera\.backoff_max_s: must be in \(0, 3600\]"),
    ],
)
def test_declared_limits_name_the_key_and_the_range(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CameraSpec(**kwargs)


def test_the_largest_pi_sensor_fits_the_limits() -> None:
    assert CameraSpec(kind="picamera2", width=4608, height=2592).lores_size == (320, 180)


def test_importing_the_spec_pulls_in_no_opencv() -> None:
    code = "import sys, edgeface.camera.spec; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
