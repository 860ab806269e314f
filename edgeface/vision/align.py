"""Face alignment: a least-squares similarity transform of detected keypoints onto a model's template."""

from __future__ import annotations

import cv2
import numpy as np

from edgeface.types import Detection
from edgeface.vision.modelcard import AlignSpec


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 matrix of the rotation + uniform scale + translation (no reflection) that best maps
    `source` (K, 2) onto `target` (K, 2) in the least-squares sense (Umeyama's closed form)."""
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(
            f"expected two (K>=2, 2) point sets of equal shape, got {source.shape} and {target.shape}"
        )
    src_mean, dst_mean = source.mean(0), target.mean(0)
    src, dst = source - src_mean, target - dst_mean
    covariance = dst.T @ src / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1] = -1.0  # forbid a reflection: faces are never mirrored by the camera geometry
    rotation = u @ np.diag(sign) @ vt
    variance = (src**2).sum() / len(source)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def keypoints_for(detection: Detection, spec: AlignSpec) -> np.ndarray:
    return np.stack([detection.keypoint(name) for name in spec.points]).astype(np.float64)


def align_face(image: np.ndarray, detection: Detection, spec: AlignSpec, size: tuple[int, int]) -> np.ndarray:
    """Warp the face onto the template: returns an (H, W, 3) crop in the image's own colour order."""
    matrix = similarity_transform(keypoints_for(detection, spec), spec.template)
    height, width = size
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
