"""Builders of the docs/design.md §6 payloads: typed inputs in, JSON-ready dicts (and bytes) out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from edgeface.mqtt.health import SpoolHealth
from edgeface.util.fields import finite_number
from edgeface.util.timestamps import rfc3339


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; NaN or infinity is a bug upstream and raises ValueError."""
    try:
        return json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()
    except ValueError as exc:
        raise ValueError(f"payload is not valid JSON (NaN or infinity in a number?): {exc}") from exc


@dataclass(frozen=True, slots=True)
class Incident:
    """Something damaged or refused that the daemon survived: `kind` is a short stable code
    (`gallery_set_aside`, `gallery_unusable`, `reload_refused`, `restart_needed`, `gallery_expired`,
    `bundle_rejected`), `detail` is printable."""

    kind: str
    detail: str
    ts: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "detail": self.detail, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class StatusInfo:
    """What the retained status message says besides online/offline."""

    version: str
    gallery_version: int | None
    gallery_count: int
    model_name: str
    model_sha256: str
    gallery_expired: bool = False  # fleet sync under `warn`: still matching, and saying so
    freshness: Mapping[str, object] | None = None  # fleet sync: `Freshness.as_dict()` (stale, age_s, ...)
    decision: dict[str, float | str] | None = None  # `MatchRule.as_dict()`: threshold, margin, source
    incidents: tuple[Incident, ...] = ()  # the latest few, newest last; the payload gets them only if any


def status_payload(
    state: str, info: StatusInfo, when: datetime | None = None, spool: SpoolHealth | None = None
) -> dict[str, Any]:
    """``spool`` adds a ``"spool"`` object (``SpoolHealth.as_dict()``); the publisher passes it only when
    the spool is degraded (a file quarantined, events lost or dropped, events held in memory)."""
    if state not in ("online", "offline"):
        raise ValueError(f"status state: must be 'online' or 'offline', got {state!r}")
    payload: dict[str, Any] = {
        "state": state,
        "ts": rfc3339(when),
        "version": info.version,
        "gallery": {
            "version": info.gallery_version,
            "count": info.gallery_count,
            "expired": info.gallery_expired,
        },
        "model": {"name": info.model_name, "sha256": info.model_sha256},
    }
    if info.freshness is not None:
        payload["gallery"]["freshness"] = dict(info.freshness)
    if info.decision is not None:
        payload["decision"] = dict(info.decision)
    if spool is not None:
        payload["spool"] = spool.as_dict()
    if info.incidents:
        payload["incidents"] = [incident.as_dict() for incident in info.incidents]
    return payload


@dataclass(frozen=True, slots=True)
class GalleryState:
    """The retained `{prefix}/{device}/gallery/state`: the last bundle's outcome, and what the door runs."""

    version: int | None  # the bundle this state is about
    status: Literal["applied", "rejected"]
    reason: str | None = None  # why it was rejected (required then), or a warning it was applied with
    running: int | None = None  # the gallery version the door runs now
    fleet: str | None = None
    expired: bool = False
    freshness: Mapping[str, object] | None = None  # `Freshness.as_dict()`
    ts: str = field(default_factory=rfc3339)

    def __post_init__(self) -> None:
        if self.status not in ("applied", "rejected"):
            raise ValueError(f"gallery state status: must be 'applied' or 'rejected', got {self.status!r}")

    def payload(self) -> dict[str, Any]:
        """The §6 object; `running`, `fleet` and `freshness` only when known."""
        known = {"running": self.running, "fleet": self.fleet, "freshness": self.freshness}
        return {
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "ts": self.ts,
            "expired": self.expired,
        } | {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in known.items() if v is not None}


@dataclass(frozen=True, slots=True)
class StageLatency:
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True, slots=True)
class CameraHealth:
    connected: bool
    error: str | None = None  # the capture's end (files, emulated frames) or a live source's last error
    reconnects: int | None = None  # None: a source that does not reconnect
    failures: int | None = None

    def as_dict(self) -> dict[str, object]:
        if self.reconnects is None:
            return {"connected": self.connected, "error": self.error}
        return {"connected": self.connected, "reconnects": self.reconnects, "failures": self.failures,
                "last_error": self.error}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Metrics:
    """Periodic health numbers on `{prefix}/{device}/metrics` (QoS 0). The daemon's counters are optional so a
    tool or test can send the core alone; a field left None is left out of the payload."""

    device: str
    fps: float
    stages: Mapping[str, StageLatency]
    queues: Mapping[str, int]
    dropped_frames: int
    uptime_s: float
    camera: CameraHealth | None = None
    camera_frames: int | None = None
    rejected_faces: int | None = None
    reverified_resets: int | None = None
    decision: Mapping[str, float | str] | None = None  # `MatchRule.as_dict()`
    events: int | None = None
    mqtt: Mapping[str, object] | None = None  # `PublisherStats.as_dict()`
    incidents: Mapping[str, int] | None = None  # incidents survived, by kind
    spool: SpoolHealth | None = None
    ts: str = field(default_factory=rfc3339)

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "ts": self.ts,
            "device": self.device,
            "fps": round(finite_number("fps", self.fps), 2),
            "latency_ms": {
                name: {
                    "p50": round(finite_number(name, s.p50_ms), 2),
                    "p95": round(finite_number(name, s.p95_ms), 2),
                }
                for name, s in self.stages.items()
            },
            "queues": {name: int(depth) for name, depth in self.queues.items()},
            "dropped_frames": int(self.dropped_frames),
            "uptime_s": round(finite_number("uptime_s", self.uptime_s), 1),
        }
        optional: dict[str, object] = {
            "camera": None if self.camera is None else self.camera.as_dict(),
            "camera_frames": self.camera_frames,
            "rejected_faces": self.rejected_faces,
            "reverified_resets": self.reverified_resets,
            "decision": None if self.decision is None else dict(self.decision),
            "events": self.events,
            "mqtt": None if self.mqtt is None else dict(self.mqtt),
            "incidents": None if self.incidents is None else dict(self.incidents),
            "spool": None if self.spool is None else self.spool.as_dict(),
        }
        return payload | {k: v for k, v in optional.items() if v is not None}
