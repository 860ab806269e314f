"""Typed values passed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

KEYPOINT_NAMES: tuple[str, ...] = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)


@dataclass(frozen=True, slots=True)
class Frame:
    """One camera frame: BGR uint8 pixels, monotonic timestamp and sequence number."""

    image: np.ndarray
    ts: float
    seq: int
    camera: str = "cam0"
    # A low-resolution copy of the same exposure (picamera2's `lores` stream): detect on it, crop from `image`.
    lores: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"Frame.image: expected (H, W, 3) uint8, got {self.image.shape} {self.image.dtype}"
            )

    @property
    def lores_scale(self) -> tuple[float, float]:
        """Maps `lores` pixel coordinates to `image` ones."""
        if self.lores is None:
            return (1.0, 1.0)
        return (self.image.shape[1] / self.lores.shape[1], self.image.shape[0] / self.lores.shape[0])


Box = tuple[float, float, float, float]  # x, y, w, h in pixels


@dataclass(frozen=True, slots=True)
class Detection:
    """A face box in pixel coordinates (x, y, w, h) with named keypoints (K, 2) and a score."""

    bbox: Box
    keypoints: np.ndarray
    score: float

    def __post_init__(self) -> None:
        if self.keypoints.ndim != 2 or self.keypoints.shape[1] != 2:
            raise ValueError(f"Detection.keypoints: expected (K, 2), got {self.keypoints.shape}")

    def keypoint(self, name: str) -> np.ndarray:
        point: np.ndarray = self.keypoints[KEYPOINT_NAMES.index(name)]
        return point


@dataclass(frozen=True, slots=True)
class Identity:
    id: str
    name: str


MatchDecision = Literal["match", "unknown"]
DECISIONS: tuple[MatchDecision, ...] = get_args(MatchDecision)


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome of searching one embedding: a decision with its evidence."""

    decision: MatchDecision
    identity: Identity | None
    score: float
    margin: float
    threshold: float


@dataclass(frozen=True, slots=True)
class SearchHit:
    index: int
    score: float


@dataclass(slots=True)
class Track:
    """A face followed across frames by the tracker; mutable while it lives."""

    track_id: int
    bbox: Box
    first_seen: float
    last_seen: float
    embeddings: list[np.ndarray] = field(default_factory=list)
    frames_seen: int = 0
    match: Match | None = None  # set once the track is decided
    decided_on: list[np.ndarray] = field(default_factory=list)  # the faces of that decision
    last_check: float = 0.0  # when a decided track was last re-checked or re-verified
    checking: list[np.ndarray] = field(default_factory=list)  # faces of a decided track's open check window
    corrected: bool = False  # an `unknown` that became a `match` is settled
    crops: list[np.ndarray] = field(default_factory=list)  # the newest aligned crops (a few, see Recognizer)

    @property
    def decided(self) -> bool:
        return self.match is not None
