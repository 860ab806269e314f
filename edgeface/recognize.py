"""Per-frame recognition: detect -> track -> quality gate -> align + embed undecided tracks -> decide.

Synchronous and free of threads and I/O, so it is tested frame by frame; the daemon drives it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeface.align import align_face
from edgeface.detect import FaceDetector
from edgeface.embed import Embedder
from edgeface.index import IndexHolder
from edgeface.landmarks import LandmarkRefiner
from edgeface.match import Matcher
from edgeface.quality import QualitySettings, assess
from edgeface.stats import LatencyWindow
from edgeface.track import IouTracker
from edgeface.types import Detection, Frame, Match, Track


@dataclass(frozen=True, slots=True)
class DecisionSettings:
    min_frames: int = 3
    max_wait_s: float = 1.5
    cooldown_s: float = 10.0
    detect_every: int = 1


@dataclass(frozen=True, slots=True)
class Decision:
    camera: str
    track_id: int
    match: Match
    frames: int
    bbox: tuple[float, float, float, float]
    frame_ts: float  # monotonic capture time of the frame that completed the decision
    gallery_version: int


class Recognizer:
    def __init__(
        self,
        detector: FaceDetector,
        embedder: Embedder,
        index: IndexHolder,
        matcher: Matcher,
        quality: QualitySettings,
        decisions: DecisionSettings,
        matching_allowed: Callable[[], bool] = lambda: True,
        refiner: LandmarkRefiner | None = None,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.index = index
        self.matcher = matcher
        self.quality = quality
        self.decisions = decisions
        self.matching_allowed = matching_allowed
        self.refiner = refiner
        self.tracker = IouTracker()
        self.latency = LatencyWindow()
        self.rejected_faces = 0
        self._announced: dict[tuple[str, str], float] = {}

    def process(self, frame: Frame) -> list[Decision]:
        if frame.seq % self.decisions.detect_every:
            return []
        started = time.perf_counter()
        detections = self._detect(frame)
        self.latency.add("detect", (time.perf_counter() - started) * 1e3)
        self.tracker.expire(frame.ts)  # before matching, so a new person never inherits a stale track
        assigned = self.tracker.update(detections, frame.ts)
        pending = [(t, d) for t, d in assigned if not t.decided]
        good = [(t, d) for t, d in pending if self._passes_quality(frame.image, d)]
        if good:
            started = time.perf_counter()
            crops = [
                align_face(frame.image, d, self.embedder.align, self.embedder.crop_size) for _, d in good
            ]
            embeddings = self.embedder.embed(crops)
            self.latency.add("embed", (time.perf_counter() - started) * 1e3)
            for (track, _), embedding in zip(good, embeddings, strict=True):
                track.embeddings.append(embedding)
        return [self._decide(frame, t) for t, _ in pending if self._ready(t, frame.ts)]

    def _detect(self, frame: Frame) -> list[Detection]:
        """Detect on the low-resolution stream when the camera gives one; boxes map back to `image`."""
        lores = getattr(frame, "lores", None)
        if lores is None:
            return self.detector.detect(frame.image)
        sx, sy = frame.lores_scale  # type: ignore[attr-defined]
        scale = np.array([sx, sy], np.float32)
        return [
            Detection(
                (d.bbox[0] * sx, d.bbox[1] * sy, d.bbox[2] * sx, d.bbox[3] * sy), d.keypoints * scale, d.score
            )
            for d in self.detector.detect(lores)
        ]

    def _passes_quality(self, image: np.ndarray, detection: Detection) -> bool:
        report = assess(image, detection, self.quality)
        if not report.ok:
            self.rejected_faces += 1
        return report.ok

    def _ready(self, track: Track, ts: float) -> bool:
        if not track.embeddings:
            return False
        waited = ts - track.first_seen >= self.decisions.max_wait_s
        return len(track.embeddings) >= self.decisions.min_frames or waited

    def _decide(self, frame: Frame, track: Track) -> Decision:
        started = time.perf_counter()
        index = self.index.current
        match = self.matcher.decide(index, np.stack(track.embeddings))
        self.latency.add("search", (time.perf_counter() - started) * 1e3)
        if match.decision == "match" and not self.matching_allowed():
            match = Match("unknown", None, match.score, match.margin, match.threshold)
        track.decided = True
        return Decision(
            frame.camera,
            track.track_id,
            match,
            len(track.embeddings),
            track.bbox,
            frame.ts,
            index.gallery.version,
        )

    def should_announce(self, decision: Decision, now: float) -> bool:
        """False for a repeat match of the same identity on the same camera within the cooldown."""
        if decision.match.identity is None:
            return True
        key = (decision.camera, decision.match.identity.id)
        last = self._announced.get(key)
        if last is not None and now - last < self.decisions.cooldown_s:
            return False
        self._announced[key] = now
        return True
