"""Optional keypoint refinement with MediaPipe's face mesh (face_landmark.tflite, 468 points).

BlazeFace's keypoints are coarse; the mesh gives eye centres, nose tip and mouth centre from a 192x192
crop rotated upright around the detection. Whether this pays for its time is measured by
`bench/landmarks.py` and `edgeface eval --refine`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeface.errors import ModelError
from edgeface.types import Detection
from edgeface.vision.modelcard import sha256_file
from edgeface.vision.runtime import TFLiteModel

MESH_FILE = "face_landmark.tflite"
MESH_SHA256 = "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"
MESH_SIZE = 192
# Face-mesh vertex indices (MediaPipe canonical mesh): eye contours, nose tip, inner lips.
RIGHT_EYE = (33, 133, 159, 145, 160, 144, 158, 153)
LEFT_EYE = (362, 263, 386, 374, 387, 373, 385, 380)
NOSE_TIP = (1,)
MOUTH = (13, 14, 78, 308)


class LandmarkRefiner:
    """`refine(bgr, detection) -> Detection` with the first four keypoints re-estimated from the mesh."""

    def __init__(self, models_dir: str | Path, num_threads: int = 2, roi_scale: float = 1.5) -> None:
        path = Path(models_dir) / MESH_FILE
        if path.is_file() and sha256_file(path) != MESH_SHA256:
            raise ModelError(f"{path}: sha256 does not match the pinned face landmark model")
        self._model = TFLiteModel(path, num_threads=num_threads)
        self.roi_scale = roi_scale

    def roi_matrix(self, detection: Detection) -> np.ndarray:
        """2x3 affine from the image to an upright MESH_SIZE square around the face."""
        right, left = detection.keypoint("right_eye"), detection.keypoint("left_eye")
        angle = np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))
        x, y, w, h = detection.bbox
        side = max(w, h) * self.roi_scale
        rotation = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, MESH_SIZE / side)
        matrix = np.asarray(rotation, dtype=np.float64)
        matrix[:, 2] += MESH_SIZE / 2 - np.array([x + w / 2, y + h / 2])
        return matrix

    def mesh(self, image: np.ndarray, detection: Detection) -> tuple[np.ndarray, float]:
        """(468, 2) mesh points in image pixels and the face-presence probability."""
        matrix = self.roi_matrix(detection)
        crop = cv2.warpAffine(image, matrix, (MESH_SIZE, MESH_SIZE), borderMode=cv2.BORDER_CONSTANT)
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        points, presence = self._model.run(rgb[None])
        points = points.reshape(-1, 3)[:, :2]
        inverse = cv2.invertAffineTransform(matrix)
        image_points = points @ inverse[:, :2].T + inverse[:, 2]
        return image_points, float(1 / (1 + np.exp(-np.clip(presence.ravel()[0], -80, 80))))

    def refine(self, image: np.ndarray, detection: Detection, min_presence: float = 0.5) -> Detection:
        points, presence = self.mesh(image, detection)
        if presence < min_presence:
            return detection
        keypoints = detection.keypoints.copy()
        for row, group in enumerate((RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH)):
            keypoints[row] = points[list(group)].mean(0)
        return Detection(detection.bbox, keypoints, detection.score)

    def close(self) -> None:
        self._model.close()
