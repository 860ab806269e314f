"""The one face path: detect -> refine keypoints -> align onto the embedder's template -> embed.

`enroll`, `identify`, `eval`, the demo, the benchmarks and the daemon all go through `FaceEncoder`, so a
gallery is enrolled on exactly the crops it is probed with. Photos use a detector cascade that also finds
faces filling the frame; the daemon uses one camera detector and embeds only faces of undecided tracks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeface.errors import NoFaceError
from edgeface.types import Detection
from edgeface.util.vectors import l2_normalize
from edgeface.vision.align import align_face
from edgeface.vision.detect import Detects, framed, unframed
from edgeface.vision.embed import Embedder
from edgeface.vision.landmarks import LandmarkRefiner


@dataclass(frozen=True, slots=True)
class EncodedFace:
    detection: Detection
    embedding: np.ndarray  # (D,) L2-normalised


class CascadeDetector:
    """Photo detection: each detector on the image, then on the image with growing black borders, until one
    finds a face. BlazeFace was trained on faces with context, so a face that fills a tight crop or an ID
    photo is found only once a border gives it some."""

    def __init__(self, detectors: Sequence[Detects], borders: Sequence[float] = (0.25, 0.5, 1.0)) -> None:
        self.detectors = tuple(detectors)
        self.borders = tuple(borders)
        self.last_stage: str | None = None  # which detector and border found the last image's faces

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.last_stage = None
        for border in (0.0, *self.borders):
            # the unbordered pass sees the photo itself; each retry a bordered copy of bounded pixels
            view, scale, pad = (image, 1.0, 0) if border == 0 else framed(image, border)
            for index, detector in enumerate(self.detectors):
                found = detector.detect(view)
                if found:
                    self.last_stage = f"{getattr(detector, 'model', index)}+{border:.0%} border"
                    return [unframed(d, scale, pad) for d in found] if border else found
        return []

    def close(self) -> None:
        for detector in self.detectors:
            detector.close()


class FaceEncoder:
    """`encode(bgr) -> [EncodedFace]` for every face, largest first; `embed_faces` for known detections.

    With `flip`, each crop is embedded together with its mirror image and the two are averaged: measured to
    raise verification at a fixed false-accept rate (README) for one extra embedder call per face."""

    def __init__(
        self,
        detector: Detects,
        embedder: Embedder,
        refiner: LandmarkRefiner | None = None,
        *,
        flip: bool = True,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.refiner = refiner
        self.flip = flip

    def crop(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        if self.refiner is not None:
            detection = self.refiner.refine(image, detection)
        return align_face(image, detection, self.embedder.align, self.embedder.crop_size)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if not self.flip or len(crops) == 0:
            return self.embedder.embed(list(crops))
        both = self.embedder.embed([*crops, *(np.ascontiguousarray(c[:, ::-1]) for c in crops)])
        return l2_normalize(both[: len(crops)] + both[len(crops) :])

    def embed_faces(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        return self.embed_crops([self.crop(image, d) for d in detections])

    def encode(self, image: np.ndarray) -> list[EncodedFace]:
        detections = sorted(self.detector.detect(image), key=lambda d: -d.bbox[2] * d.bbox[3])
        if not detections:
            return []
        embeddings = self.embed_faces(image, detections)
        return [EncodedFace(d, e) for d, e in zip(detections, embeddings, strict=True)]

    def encode_largest(self, image: np.ndarray, source: str = "image") -> EncodedFace:
        faces = self.encode(image)
        if not faces:
            raise NoFaceError(f"{source}: no face found")
        return faces[0]

    def close(self) -> None:
        self.detector.close()
        self.embedder.close()
        if self.refiner is not None:
            self.refiner.close()
