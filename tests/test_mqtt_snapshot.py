"""The face snapshot: a JPEG within both caps, or nothing; one per interval."""

from __future__ import annotations

import cv2
import numpy as np

from edgeface.mqtt.snapshot import RateGate, encode_snapshot


def noisy(size: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)


def test_the_jpeg_fits_the_pixel_and_byte_caps_or_is_not_made() -> None:
    data = encode_snapshot(noisy(150), max_px=64, max_bytes=8000)
    assert data is not None and len(data) <= 8000
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (64, 64, 3)
    assert encode_snapshot(noisy(150), max_px=256, max_bytes=1024) is None  # noise does not compress
    assert encode_snapshot(np.zeros((0, 0, 3), np.uint8), 64, 8000) is None
    small = encode_snapshot(noisy(40), max_px=112, max_bytes=131072)
    assert small is not None
    assert cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_COLOR).shape == (
        40,
        40,
        3,
    )  # never upscaled


def test_the_rate_gate_passes_one_per_interval() -> None:
    gate = RateGate(5.0)
    assert [gate.allow(t) for t in (0.0, 1.0, 4.9, 5.0, 6.0, 10.1)] == [True, False, False, True, False, True]
