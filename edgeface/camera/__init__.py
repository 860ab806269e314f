"""Camera sources behind one interface: `FrameSource.read(timeout) -> Frame | None`.

`open_source(CameraSpec(...))` picks the implementation: picamera2 (imported only when opened), OpenCV
(V4L2, GStreamer, RTSP/HTTP, video file), replay of a folder or video, or the emulated camera.
The names below load on first use, so the config loader can import `edgeface.camera.spec` without cv2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "Backoff": "edgeface.camera.reconnect",
    "CameraError": "edgeface.camera.base",
    "CameraSpec": "edgeface.camera.spec",
    "CameraStatus": "edgeface.camera.base",
    "DualFrame": "edgeface.camera.base",
    "EndOfStream": "edgeface.camera.base",
    "FrameSource": "edgeface.camera.base",
    "ReconnectingSource": "edgeface.camera.reconnect",
    "open_source": "edgeface.camera.factory",
}

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

if TYPE_CHECKING:
    from edgeface.camera.base import CameraError, CameraStatus, DualFrame, EndOfStream, FrameSource
    from edgeface.camera.factory import open_source
    from edgeface.camera.reconnect import Backoff, ReconnectingSource
    from edgeface.camera.spec import CameraSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeface.camera' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
