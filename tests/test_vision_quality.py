"""The quality gate: each check rejects with its own reason, and yaw is measured from the keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from edgeface.vision.quality import QualitySettings, assess, yaw_ratio
from tests.factories import make_detection, textured


def test_yaw_ratio_golden_numbers() -> None:
    assert yaw_ratio(make_detection(10, 10, 100)) == pytest.approx(0.0, abs=1e-6)
    assert yaw_ratio(make_detection(10, 10, 100, yaw=0.5)) == pytest.approx(0.5, abs=1e-5)
    assert yaw_ratio(make_detection(10, 10, 100, yaw=-0.25)) == pytest.approx(0.25, abs=1e-5)


def test_yaw_ratio_of_collapsed_eyes_is_fully_turned() -> None:
    detection = make_detection(10, 10, 100)
    detection.keypoints[:2] = detection.keypoints[0]
    assert yaw_ratio(detection) == 1.0


def test_a_good_face_passes_with_its_measurements() -> None:
    report = assess(textured(), make_detection(50, 50, 100), QualitySettings())
    assert report.ok and report.reason == "ok"
    assert report.size == 100 and report.sharpness > 20 and 100 < report.brightness < 160


@pytest.mark.parametrize(
    ("image", "detection", "reason"),
    [
        (textured(), make_detection(50, 50, 30), "face 30px < 40px"),
        (np.full((240, 320, 3), 128, np.uint8), make_detection(50, 50, 100), "blurred"),
        (textured(), make_detection(50, 50, 100, yaw=0.8), "turned away"),
        (textured(value=15, spread=10), make_detection(50, 50, 100), "brightness"),
        (textured(value=245, spread=10), make_detection(50, 50, 100), "brightness"),
        (textured(), make_detection(400, 300, 100), "blurred (sharpness 0)"),  # outside: nothing to measure
    ],
)
def test_each_check_rejects_with_its_reason(image: np.ndarray, detection, reason: str) -> None:
    report = assess(image, detection, QualitySettings())
    assert not report.ok
    assert report.reason.startswith(reason), report.reason


def test_settings_move_the_limits() -> None:
    small = make_detection(50, 50, 30)
    assert assess(textured(), small, QualitySettings(min_face_px=24)).ok
    assert not assess(textured(), make_detection(50, 50, 100, yaw=0.5), QualitySettings(max_yaw=0.4)).ok
