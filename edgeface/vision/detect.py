"""BlazeFace face detection (MediaPipe short- and full-range .tflite): anchors, decoding, weighted NMS.

Input frames are BGR uint8. Results are in the frame's pixel coordinates with six keypoints in the
order of `edgeface.types.KEYPOINT_NAMES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edgeface.errors import ImageError, ModelError
from edgeface.types import Detection
from edgeface.vision.runtime import TFLiteModel


class Detects(Protocol):
    """What every face detector offers (`FaceDetector`, `encoder.CascadeDetector`): faces of a BGR image."""

    def detect(self, image: np.ndarray) -> list[Detection]: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BlazeFaceSpec:
    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_cell: tuple[int, ...]
    min_score: float
    sha256: str


SHORT_RANGE = BlazeFaceSpec(
    "face_detection_short_range.tflite",
    128,
    (8, 16),
    (2, 6),
    0.5,
    "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
)
FULL_RANGE = BlazeFaceSpec(
    "face_detection_full_range.tflite",
    192,
    (4,),
    (1,),
    0.5,
    "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
)
SPECS = {"short": SHORT_RANGE, "full": FULL_RANGE}


# Pixels of any bordered retry image (4 MP BGR is 12 MB); larger photos are shrunk before the border.
MAX_RETRY_PIXELS = 4_000_000


def make_anchors(spec: BlazeFaceSpec) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1]; BlazeFace uses fixed-size anchors, so only centres matter."""
    centres = []
    for stride, count in zip(spec.strides, spec.anchors_per_cell, strict=True):
        cells = spec.size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(grid, count, axis=0))
    return np.concatenate(centres).astype(np.float32)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Scale to fit a size x size square, centred, black padding. Returns (square, scale, (pad_x, pad_y))."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    pad_x, pad_y = (size - nw) / 2, (size - nh) / 2
    square = np.zeros((size, size, 3), np.uint8)
    top, left = int(pad_y), int(pad_x)
    square[top : top + nh, left : left + nw] = resized
    return square, scale, (float(left), float(top))


def iou_matrix(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box against (N, 4) boxes."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou: np.ndarray = inter / np.maximum(area + areas - inter, 1e-9)
    return iou


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe-style NMS: overlapping candidates are averaged, weighted by score, not discarded."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.ones(len(scores), bool)
    merged = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        overlap = remaining & (iou_matrix(boxes[i], boxes) >= iou_threshold)
        weights = scores[overlap][:, None]
        box = (boxes[overlap] * weights).sum(0) / weights.sum()
        kps = (keypoints[overlap] * weights[:, :, None]).sum(0) / weights.sum()
        merged.append((box, kps, float(scores[i])))
        remaining &= ~overlap
    return merged


class FaceDetector:
    """`detect(bgr) -> list[Detection]`, best first.

    `pad_retry` re-runs on the image with a border added when nothing is found: tight crops where the
    face fills the frame are otherwise missed, because BlazeFace was trained on faces with context.
    """

    def __init__(
        self,
        models_dir: str | Path,
        model: str = "full",
        num_threads: int = 2,
        min_score: float | None = None,
        iou_threshold: float = 0.3,
        pad_retry: bool = True,
    ) -> None:
        if model not in SPECS:
            raise ModelError(f"detector model must be one of {sorted(SPECS)}, got {model!r}")
        self.model = model
        self.spec = SPECS[model]
        path = Path(models_dir) / self.spec.file
        from edgeface.vision.modelcard import sha256_file

        if path.is_file() and sha256_file(path) != self.spec.sha256:
            raise ModelError(f"{path}: sha256 does not match the pinned BlazeFace {model}-range model")
        self._model = TFLiteModel(path, num_threads=num_threads)
        if self._model.input_shape[1:3] != (self.spec.size, self.spec.size):
            raise ModelError(f"{path}: input {self._model.input_shape} is not BlazeFace {model}-range")
        self._anchors = make_anchors(self.spec)
        self.min_score = self.spec.min_score if min_score is None else min_score
        self.iou_threshold = iou_threshold
        self.pad_retry = pad_retry

    def detect(self, image: np.ndarray) -> list[Detection]:
        if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            raise ImageError(
                f"detector input must be a BGR image (H, W, 3), got {getattr(image, 'shape', None)}"
            )
        found = self._detect_once(image)
        if not found and self.pad_retry:
            padded, scale, border = framed(image, 0.5)
            found = [unframed(d, scale, border) for d in self._detect_once(padded)]
        return found

    def _detect_once(self, image: np.ndarray) -> list[Detection]:
        size = self.spec.size
        square, scale, (pad_x, pad_y) = letterbox(image, size)
        rgb = cv2.cvtColor(square, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
        regressors, logits = self._model.run(rgb[None])
        raw = regressors[0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0], -80.0, 80.0)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, anchors, scores = raw[keep], self._anchors[keep], scores[keep]
        centres = raw[:, 0:2] / size + anchors
        half = raw[:, 2:4] / size / 2
        boxes = np.concatenate([centres - half, centres + half], axis=1) * size
        kps = (raw[:, 4:16].reshape(-1, 6, 2) / size + anchors[:, None, :]) * size
        detections = []
        for box, points, score in weighted_nms(boxes, kps, scores, self.iou_threshold):
            x0, y0 = (box[0] - pad_x) / scale, (box[1] - pad_y) / scale
            x1, y1 = (box[2] - pad_x) / scale, (box[3] - pad_y) / scale
            points = (points - np.array([pad_x, pad_y])) / scale
            detections.append(Detection((x0, y0, x1 - x0, y1 - y0), points.astype(np.float32), score))
        return detections

    def close(self) -> None:
        self._model.close()


def framed(
    image: np.ndarray, border: float, max_pixels: int = MAX_RETRY_PIXELS
) -> tuple[np.ndarray, float, int]:
    """`image` inside a black border of `border` times its longer side, shrunk first if the bordered image
    would exceed `max_pixels` (the detector sees 128 or 256 pixels anyway), so a retry of a 40 MP photo
    costs megabytes, not gigabytes. Returns (framed image, scale applied, border in framed pixels)."""
    h, w = image.shape[:2]
    grown = (h + 2 * border * max(h, w)) * (w + 2 * border * max(h, w))  # the border is of the longer side
    scale = min(1.0, (max_pixels / grown) ** 0.5)
    if scale < 1.0:
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    pad = int(border * max(image.shape[:2]))
    if pad == 0:
        return image, scale, 0
    return cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0), scale, pad


def unframed(detection: Detection, scale: float, pad: int) -> Detection:
    """A detection in a `framed` image mapped back onto the original image."""
    x, y, w, h = detection.bbox
    return Detection(
        ((x - pad) / scale, (y - pad) / scale, w / scale, h / scale),
        ((detection.keypoints - pad) / scale).astype(np.float32),
        detection.score,
    )
