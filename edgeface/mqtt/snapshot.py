"""The opt-in face snapshot: a small JPEG of the aligned face crop (never the camera frame), size and rate capped."""

from __future__ import annotations

import cv2
import numpy as np

_QUALITIES = (85, 75, 65, 55, 45, 35)


def encode_snapshot(crop: np.ndarray, max_px: int, max_bytes: int) -> bytes | None:
    """The crop as a JPEG at most `max_px` on its longer side and at most `max_bytes` long (lower quality
    is tried before giving up); None when even the lowest quality does not fit."""
    if crop.ndim not in (2, 3) or crop.size == 0:
        return None
    height, width = crop.shape[:2]
    scale = min(1.0, max_px / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    pixels = np.ascontiguousarray(crop.astype(np.uint8, copy=False))
    for quality in _QUALITIES:
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok and len(data) <= max_bytes:
            return data.tobytes()
    return None


class RateGate:
    """At most one pass per `interval_s` (monotonic seconds); the first call always passes."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return True
