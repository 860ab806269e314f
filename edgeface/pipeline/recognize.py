"""Per-frame recognition: detect -> track -> quality gate -> embed (the shared face path) -> decide.

Synchronous and free of threads and I/O, so it is tested frame by frame; the daemon drives it.

A track gets one decision after `min_frames` good faces (or `max_wait_s`). After that it is checked now and
then on `min_frames` fresh consecutive faces (a check window), never on single frames:
- a track decided `unknown` is checked every `recheck_s` while the person stays: if the window's faces match
  someone, one correction is emitted and the track is settled (a better pose or light arrived);
- otherwise (and for matched tracks every `reverify_s`) the window is compared with the faces the track was
  decided on; if they are not the same person at the decision threshold, someone else stepped into the same
  spot, and a fresh track is decided on the window.
Only undecided tracks and open check windows cost embedder (and refiner) work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from edgeface.identity.live import GoLive, LiveGallery
from edgeface.pipeline.match_settings import MatchSettings
from edgeface.pipeline.track import IouTracker
from edgeface.types import Detection, Frame, Match, Track
from edgeface.util.stats import LatencyWindow
from edgeface.util.vectors import l2_normalize
from edgeface.vision.detect import Detects
from edgeface.vision.quality import assess
from edgeface.vision.quality_settings import QualitySettings


class Embeds(Protocol):
    """What the recognizer needs of the face path (`FaceEncoder`): an aligned crop, and crops embedded."""

    def crop(self, image: np.ndarray, detection: Detection) -> np.ndarray: ...
    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class Recognition:
    """A track recognised (or found unknown): its first decision, or the correction of an `unknown`."""

    camera: str
    track_id: int
    match: Match
    frames: int
    bbox: tuple[float, float, float, float]
    frame_ts: float  # monotonic capture time of the frame that completed the decision
    gallery_version: int
    embedding: np.ndarray = field(repr=False)  # the track's mean embedding the decision was made on
    kind: Literal["first", "correction"] = "first"
    crops: tuple[np.ndarray, ...] = field(default=(), repr=False)  # the track's newest aligned face crops


KEEP_CROPS = 10  # aligned crops a track carries for its decision (snapshot, kept visitors)


class Recognizer:
    def __init__(
        self,
        detector: Detects,
        embedder: Embeds,
        live: GoLive,
        quality: QualitySettings,
        match: MatchSettings,
        *,
        every_n_frames: int = 1,
        matching_allowed: Callable[[], bool] = lambda: True,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.live = live
        self.matching_allowed = matching_allowed
        self.tracker = IouTracker()
        self.latency = LatencyWindow()
        self.rejected_faces = 0
        self.reverified_resets = 0
        self.reconfigure(quality, match, every_n_frames)

    def reconfigure(self, quality: QualitySettings, match: MatchSettings, every_n_frames: int = 1) -> None:
        """New settings (SIGHUP); tracks in flight keep their state. The decision rule is not set here: it
        comes with each gallery (`GoLive`), read once per decision together with the index."""
        self.quality = quality
        self.settings = match
        self.every_n_frames = every_n_frames

    def process(self, frame: Frame) -> list[Recognition]:
        if frame.seq % self.every_n_frames:
            return []
        started = time.perf_counter()
        detections = self._detect(frame)
        self.latency.add("detect", (time.perf_counter() - started) * 1e3)
        self.tracker.expire(frame.ts)  # before matching, so a new person never inherits a stale track
        assigned = self.tracker.update(detections, frame.ts)
        due = [(t, d) for t, d in assigned if self._needs_face(t, frame.ts)]
        good = [(t, d) for t, d in due if self._passes_quality(frame.image, d)]
        if good:
            started = time.perf_counter()
            crops = [self.embedder.crop(frame.image, d) for _, d in good]
            embeddings = self.embedder.embed_crops(crops)
            self.latency.add("embed", (time.perf_counter() - started) * 1e3)
            for (track, _), embedding, crop in zip(good, embeddings, crops, strict=True):
                self._take_face(track, embedding)
                track.crops = [*track.crops[1 - KEEP_CROPS :], crop]
        out = []
        for track, _ in good:
            recognition = self._maybe_decide(frame, track)
            if recognition is not None:
                out.append(recognition)
        for track, _ in assigned:
            if track.match is None and track not in (t for t, _ in good) and self._ready(track, frame.ts):
                out.append(self._decide(frame, track, "first"))
        return out

    def _detect(self, frame: Frame) -> list[Detection]:
        """Detect on the low-resolution stream when the camera gives one; boxes map back to `image`."""
        detector = self.detector
        if frame.lores is None:
            return detector.detect(frame.image)
        sx, sy = frame.lores_scale
        scale = np.array([sx, sy], np.float32)
        return [
            Detection(
                (d.bbox[0] * sx, d.bbox[1] * sy, d.bbox[2] * sx, d.bbox[3] * sy), d.keypoints * scale, d.score
            )
            for d in detector.detect(frame.lores)
        ]

    def _needs_face(self, track: Track, ts: float) -> bool:
        """Undecided tracks and open check windows embed every frame; a settled track when a check is due."""
        if track.match is None or track.checking:
            return True
        unsettled = track.match.decision == "unknown" and not track.corrected
        interval = self.settings.recheck_s if unsettled else self.settings.reverify_s
        return ts - track.last_check >= interval

    def _passes_quality(self, image: np.ndarray, detection: Detection) -> bool:
        report = assess(image, detection, self.quality)
        if not report.ok:
            self.rejected_faces += 1
        return report.ok

    @staticmethod
    def _take_face(track: Track, embedding: np.ndarray) -> None:
        (track.embeddings if track.match is None else track.checking).append(embedding)

    def _maybe_decide(self, frame: Frame, track: Track) -> Recognition | None:
        if track.match is None:
            return self._decide(frame, track, "first") if self._ready(track, frame.ts) else None
        if len(track.checking) < self.settings.min_frames:
            return None
        return self._check(frame, track)

    def _check(self, frame: Frame, track: Track) -> Recognition | None:
        """A full check window on a decided track: a correction, a newcomer's fresh decision, or nothing."""
        faces, track.checking = track.checking, []
        track.last_check = frame.ts
        live = self.live.current
        if track.match is not None and track.match.decision == "unknown" and not track.corrected:
            match = self._search(live, faces)
            if match.decision == "match":
                track.corrected = True
                return self._recognised(frame, track, live, match, "correction", faces)
        reference = l2_normalize(np.mean(track.decided_on, axis=0))
        if float(reference @ l2_normalize(np.mean(faces, axis=0))) >= live.rule.threshold:
            return None
        self.reverified_resets += 1
        fresh = self.tracker.restart(track, frame.ts)
        fresh.embeddings.extend(faces)
        fresh.crops = list(track.crops)
        return self._decide(frame, fresh, "first")

    def _ready(self, track: Track, ts: float) -> bool:
        if not track.embeddings:
            return False
        waited = ts - track.first_seen >= self.settings.max_wait_s
        return len(track.embeddings) >= self.settings.min_frames or waited

    def _search(self, live: LiveGallery, embeddings: list[np.ndarray]) -> Match:
        started = time.perf_counter()
        match = live.decide(np.stack(embeddings))
        self.latency.add("search", (time.perf_counter() - started) * 1e3)
        if match.decision == "match" and not self.matching_allowed():
            match = Match("unknown", None, match.score, match.margin, match.threshold)
        return match

    def _decide(self, frame: Frame, track: Track, kind: Literal["first", "correction"]) -> Recognition:
        live = self.live.current  # once per decision: its index and its rule belong together
        match = self._search(live, track.embeddings)
        return self._recognised(frame, track, live, match, kind, track.embeddings)

    def _recognised(
        self,
        frame: Frame,
        track: Track,
        live: LiveGallery,
        match: Match,
        kind: Literal["first", "correction"],
        faces: list[np.ndarray],
    ) -> Recognition:
        track.match = match
        track.decided_on = list(faces)
        track.last_check = frame.ts
        return Recognition(
            frame.camera,
            track.track_id,
            match,
            len(faces),
            track.bbox,
            frame.ts,
            live.version,
            l2_normalize(np.mean(faces, axis=0)),
            kind,
            tuple(track.crops),
        )
