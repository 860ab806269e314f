"""The recognition event of docs/design.md §6: one decision for one track, typed until the publisher encodes
it.

`Event.from_recognition` makes one from a track's `Recognition` (through `recognition_event`, which builds
it from the values: fresh uuid4 `event_id`, RFC 3339 `ts`);
`Event.payload()` is the JSON object sent on `{prefix}/{device}/events`; `Event.from_payload` reads one back
(the `python -m edgeface.mqtt` tool spools events given as JSON lines).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from edgeface.types import DECISIONS, Box, Identity, Match, MatchDecision
from edgeface.util.fields import finite_number
from edgeface.util.timestamps import rfc3339

if TYPE_CHECKING:
    from edgeface.pipeline.recognize import Recognition


@dataclass(frozen=True, slots=True)
class Event:
    event_id: str
    ts: str
    device: str
    camera: str
    track: int
    decision: MatchDecision
    identity: Identity | None  # set exactly when decision is "match"
    score: float
    margin: float
    threshold: float
    frames: int
    bbox: Box
    gallery_version: int | None
    model_sha256: str
    latency_ms: float
    corrects: str | None = None  # event_id of an earlier "unknown" for this track that this match corrects

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision: must be 'match' or 'unknown', got {self.decision!r}")
        if (self.decision == "match") != (self.identity is not None):
            raise ValueError("identity: required for a 'match' and must be None for 'unknown'")
        if len(self.bbox) != 4:
            raise ValueError(f"bbox: expected [x, y, w, h], got {list(self.bbox)}")
        for name in ("score", "margin", "threshold", "latency_ms"):
            finite_number(name, getattr(self, name))
        for value in self.bbox:
            finite_number("bbox", value)

    def payload(self) -> dict[str, Any]:
        """The JSON object of docs/design.md §6 (bbox to 0.1 px, latency to 0.01 ms)."""
        identity = None if self.identity is None else {"id": self.identity.id, "name": self.identity.name}
        return {
            "event_id": self.event_id,
            "ts": self.ts,
            "device": self.device,
            "camera": self.camera,
            "track": int(self.track),
            "decision": self.decision,
            "identity": identity,
            "score": float(self.score),
            "margin": float(self.margin),
            "threshold": float(self.threshold),
            "frames": int(self.frames),
            "bbox": [round(float(v), 1) for v in self.bbox],
            "gallery_version": self.gallery_version,
            "model_sha256": self.model_sha256,
            "latency_ms": round(float(self.latency_ms), 2),
        } | ({"corrects": self.corrects} if self.corrects else {})

    @classmethod
    def from_recognition(
        cls,
        recognition: Recognition,
        *,
        device: str,
        model_sha256: str,
        latency_ms: float,
        corrects: str | None = None,
        when: datetime | None = None,
    ) -> Event:
        """The event announcing one recognition of a track (`corrects`: the `unknown` it corrects)."""
        return recognition_event(
            device=device,
            camera=recognition.camera,
            track=recognition.track_id,
            match=recognition.match,
            frames=recognition.frames,
            bbox=recognition.bbox,
            gallery_version=recognition.gallery_version,
            model_sha256=model_sha256,
            latency_ms=latency_ms,
            when=when,
            corrects=corrects,
        )

    @classmethod
    def from_payload(cls, doc: Mapping[str, Any]) -> Event:
        """An event from its JSON object; raises ValueError naming the first bad or missing field."""
        try:
            raw_identity = doc["identity"]
            identity = None if raw_identity is None else Identity(raw_identity["id"], raw_identity["name"])
            x, y, w, h = doc["bbox"]
            return cls(
                event_id=str(doc["event_id"]),
                ts=str(doc["ts"]),
                device=str(doc["device"]),
                camera=str(doc["camera"]),
                track=int(doc["track"]),
                decision=cast(MatchDecision, doc["decision"]),  # checked in __post_init__
                identity=identity,
                score=doc["score"],
                margin=doc["margin"],
                threshold=doc["threshold"],
                frames=int(doc["frames"]),
                bbox=(x, y, w, h),
                gallery_version=doc["gallery_version"],
                model_sha256=str(doc["model_sha256"]),
                latency_ms=doc["latency_ms"],
                corrects=doc.get("corrects"),
            )
        except KeyError as exc:
            raise ValueError(f"event: missing field {exc}") from exc
        except TypeError as exc:
            raise ValueError(f"event: malformed field ({exc})") from exc


def recognition_event(
    *,
    device: str,
    camera: str,
    track: int,
    match: Match,
    frames: int,
    bbox: Sequence[float],
    gallery_version: int | None,
    model_sha256: str,
    latency_ms: float,
    when: datetime | None = None,
    corrects: str | None = None,
) -> Event:
    """One decision for one track; a fresh uuid4 `event_id` lets consumers de-duplicate."""
    if len(bbox) != 4:
        raise ValueError(f"bbox: expected [x, y, w, h], got {list(bbox)}")
    x, y, w, h = (finite_number("bbox", v) for v in bbox)
    return Event(
        event_id=str(uuid.uuid4()),
        ts=rfc3339(when),
        device=device,
        camera=camera,
        track=int(track),
        decision=match.decision,
        identity=match.identity,
        score=finite_number("score", match.score),
        margin=finite_number("margin", match.margin),
        threshold=finite_number("threshold", match.threshold),
        frames=int(frames),
        bbox=(x, y, w, h),
        gallery_version=gallery_version,
        model_sha256=model_sha256,
        latency_ms=finite_number("latency_ms", latency_ms),
        corrects=corrects,
    )
