"""Cameras through OpenCV: a V4L2 device, a GStreamer pipeline (Jetson CSI), an RTSP/HTTP URL, a video file.

Live targets are read in a background thread so `read(timeout)` returns on time even when the driver or
the network stalls; the newest frame wins and older ones are counted in `dropped`. A video file is read
synchronously, every frame in order, and ends with EndOfStream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeface.camera.base import CameraError, EndOfStream, SourceBase, Stamper, ThreadedReader
from edgeface.types import Frame

log = logging.getLogger(__name__)

CaptureFactory = Callable[[int | str, int], Any]  # cv2.VideoCapture(target, apiPreference)

KINDS = ("device", "pipeline", "url", "file")

_HINTS = {
    "device": "is it plugged in, and is the user in the `video` group (ls -l /dev/video*)?",
    "pipeline": "this OpenCV needs GStreamer support (`cv2.getBuildInformation()`; the pip wheels lack it, "
    "use the distribution's python3-opencv on Jetson) and the pipeline must end in `appsink`",
    "url": "is the stream reachable from this host, and are the credentials in the URL right?",
    "file": "does the file exist, and can this OpenCV decode its codec?",
}


def default_capture_factory(target: int | str, api: int) -> Any:
    return cv2.VideoCapture(target, api)


class OpenCVSource(SourceBase):
    """`kind` is one of "device" (index or /dev/videoN), "pipeline", "url", "file"."""

    def __init__(
        self,
        target: int | str | Path,
        kind: str = "device",
        *,
        name: str = "cam0",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        capture_factory: CaptureFactory | None = None,
    ) -> None:
        if kind not in KINDS:
            raise CameraError(f"camera {name}: OpenCV source kind must be one of {KINDS}, got {kind!r}")
        self.name = name
        self.kind = kind
        self._stamper = Stamper(name)
        api = (
            cv2.CAP_GSTREAMER
            if kind == "pipeline"
            else (cv2.CAP_V4L2 if _is_v4l2(target, kind) else cv2.CAP_ANY)
        )
        source = str(target) if isinstance(target, Path) else target
        self._description = f"{kind} {_redact(source)}"
        make = capture_factory if capture_factory is not None else default_capture_factory
        try:
            self._capture = make(source, api)
        except Exception as exc:
            raise CameraError(
                f"camera {name}: cannot open {self._description} ({exc}); {_HINTS[kind]}"
            ) from exc
        if not self._capture.isOpened():
            self._capture.release()
            raise CameraError(f"camera {name}: cannot open {self._description}; {_HINTS[kind]}")
        if kind == "device":
            self._request_mode(width, height, fps)
        self._ended = False
        self._reader: ThreadedReader | None = None
        if kind != "file":
            self._reader = ThreadedReader(self._grab, name, drop_oldest=True, on_exit=self._capture.release)

    def _request_mode(self, width: int | None, height: int | None, fps: float | None) -> None:
        wanted = {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height, cv2.CAP_PROP_FPS: fps}
        for prop, value in wanted.items():
            if value:
                self._capture.set(prop, float(value))
        got = [self._capture.get(p) for p in wanted]
        log.info(
            "camera %s: %s gives %dx%d at %.1f fps", self.name, self._description, got[0], got[1], got[2]
        )

    def _grab(self) -> Frame:
        ok, image = self._capture.read()
        if not ok or image is None:
            raise CameraError(
                f"camera {self.name}: {self._description} delivered no frame (unplugged or ended)"
            )
        return self._stamper.frame(_to_bgr(image))

    @property
    def dropped(self) -> int:
        return self._reader.dropped if self._reader is not None else 0

    def read(self, timeout: float) -> Frame | None:
        if self._reader is not None:
            return self._reader.read(timeout)
        if self._ended:
            raise EndOfStream(f"camera {self.name}: {self._description} has ended")
        ok, image = self._capture.read()
        if not ok or image is None:
            self._ended = True
            raise EndOfStream(f"camera {self.name}: {self._description} has ended")
        return self._stamper.frame(_to_bgr(image))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
        else:
            self._capture.release()


def _is_v4l2(target: int | str | Path, kind: str) -> bool:
    return kind == "device" and (isinstance(target, int) or str(target).startswith("/dev/"))


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _redact(target: int | str) -> str:
    """A URL without its password, for logs and error messages."""
    text = str(target)
    if "://" in text and "@" in text.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = text.split("://", 1)
        creds, host = rest.split("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return text
