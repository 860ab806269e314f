"""Photo-level face encoding: detect -> align onto the embedder's template -> embed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeface.align import align_face
from edgeface.detect import FaceDetector
from edgeface.embed import Embedder
from edgeface.errors import NoFaceError
from edgeface.landmarks import LandmarkRefiner
from edgeface.types import Detection


@dataclass(frozen=True, slots=True)
class EncodedFace:
    detection: Detection
    embedding: np.ndarray  # (D,) L2-normalised


class FaceEncoder:
    """`encode(bgr) -> list[EncodedFace]` for every face, largest first."""

    def __init__(
        self, detector: FaceDetector, embedder: Embedder, refiner: LandmarkRefiner | None = None
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.refiner = refiner

    def crop(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        if self.refiner is not None:
            detection = self.refiner.refine(image, detection)
        return align_face(image, detection, self.embedder.align, self.embedder.crop_size)

    def encode(self, image: np.ndarray) -> list[EncodedFace]:
        detections = sorted(self.detector.detect(image), key=lambda d: -d.bbox[2] * d.bbox[3])
        if not detections:
            return []
        embeddings = self.embedder.embed([self.crop(image, d) for d in detections])
        return [EncodedFace(d, e) for d, e in zip(detections, embeddings, strict=True)]

    def encode_largest(self, image: np.ndarray, source: str = "image") -> EncodedFace:
        faces = self.encode(image)
        if not faces:
            raise NoFaceError(f"{source}: no face found")
        return faces[0]

    def close(self) -> None:
        self.detector.close()
        self.embedder.close()
