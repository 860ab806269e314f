"""Camera sources behind one interface: `FrameSource.read(timeout) -> Frame | None`.

`open_source(CameraSpec(...))` picks the implementation: picamera2 (imported only when opened), OpenCV
(V4L2, GStreamer, RTSP/HTTP, video file), replay of a folder or video, or the emulated camera.
"""

from edgeface.camera.base import CameraError, DualFrame, EndOfStream, FrameSource
from edgeface.camera.factory import open_source
from edgeface.camera.reconnect import Backoff, CameraStatus, ReconnectingSource
from edgeface.camera.spec import CameraSpec

__all__ = [
    "Backoff",
    "CameraError",
    "CameraSpec",
    "CameraStatus",
    "DualFrame",
    "EndOfStream",
    "FrameSource",
    "ReconnectingSource",
    "open_source",
]
