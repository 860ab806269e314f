"""Quality gate: only faces worth embedding reach the embedder (size, sharpness, pose, brightness)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgeface.types import Detection
from edgeface.vision.quality_settings import QualitySettings


@dataclass(frozen=True, slots=True)
class QualityReport:
    ok: bool
    reason: str
    size: float
    sharpness: float
    yaw: float
    brightness: float


def yaw_ratio(detection: Detection) -> float:
    right, left, nose = (
        detection.keypoint("right_eye"),
        detection.keypoint("left_eye"),
        detection.keypoint("nose_tip"),
    )
    eye_distance = float(np.linalg.norm(left - right))
    if eye_distance < 1e-6:
        return 1.0
    return float(abs(nose[0] - (left[0] + right[0]) / 2) / eye_distance)


def assess(image: np.ndarray, detection: Detection, settings: QualitySettings) -> QualityReport:
    x, y, w, h = detection.bbox
    size = min(w, h)
    height, width = image.shape[:2]
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(width, int(x + w)), min(height, int(y + h))
    region = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY) if x1 > x0 and y1 > y0 else None
    sharpness = float(cv2.Laplacian(region, cv2.CV_64F).var()) if region is not None else 0.0
    brightness = float(region.mean()) if region is not None else 0.0
    yaw = yaw_ratio(detection)
    checks = (
        (size >= settings.min_face_px, f"face {size:.0f}px < {settings.min_face_px}px"),
        (sharpness >= settings.min_sharpness, f"blurred (sharpness {sharpness:.0f})"),
        (yaw <= settings.max_yaw, f"turned away (yaw ratio {yaw:.2f})"),
        (settings.min_brightness <= brightness <= settings.max_brightness, f"brightness {brightness:.0f}"),
    )
    failed = [reason for ok, reason in checks if not ok]
    return QualityReport(not failed, failed[0] if failed else "ok", size, sharpness, yaw, brightness)
