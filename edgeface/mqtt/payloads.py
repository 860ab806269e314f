"""Builders of the docs/design.md §6 payloads: typed inputs in, JSON-ready dicts (and bytes) out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


def gallery_state_payload(
    version: int | None, status: str, reason: str | None = None, when: datetime | None = None
) -> dict[str, Any]:
    if status not in ("applied", "rejected"):
        raise ValueError(f"gallery state status: must be 'applied' or 'rejected', got {status!r}")
    return {"version": version, "status": status, "reason": reason, "ts": rfc3339(when)}


@dataclass(frozen=True, slots=True)
class StageLatency:
    p50_ms: float
    p95_ms: float


def metrics_payload(
    *,
    device: str,
    fps: float,
    stages: Mapping[str, StageLatency],
    queues: Mapping[str, int],
    dropped_frames: int,
    uptime_s: float,
    extra: Mapping[str, Any] | None = None,
    when: datetime | None = None,
    spool: SpoolHealth | None = None,
) -> dict[str, Any]:
    """Periodic health numbers (QoS 0); ``extra`` carries e.g. the publisher's counters; ``spool`` adds the
    spool health as ``"spool"`` (``SpoolHealth.as_dict()``)."""
    payload: dict[str, Any] = {
        "ts": rfc3339(when),
        "device": device,
        "fps": round(finite_number("fps", fps), 2),
        "latency_ms": {
            name: {
                "p50": round(finite_number(name, s.p50_ms), 2),
                "p95": round(finite_number(name, s.p95_ms), 2),
            }
            for name, s in stages.items()
        },
        "queues": {name: int(depth) for name, depth in queues.items()},
        "dropped_frames": int(dropped_frames),
        "uptime_s": round(finite_number("uptime_s", uptime_s), 1),
    }
    if spool is not None:
        payload["spool"] = spool.as_dict()
    if extra:
        payload.update({k: v for k, v in extra.items() if k not in payload})
    return payload
