"""Freshness: a short-lived signed timestamp record (the timestamp role of TUF is the model).

The fleet server re-signs it every few minutes (`edgeface gallery timestamp`, from cron or a systemd timer)
and retains it on `{prefix}/fleet/{fleet}/gallery/timestamp`::

    {"record": base64 of the exact signed bytes, "signature": base64 (64 bytes)[, "cert": base64]}
    record: {"format": "edgeface-timestamp/1", "fleet", "version", "manifest_sha256", "issued", "expires"}

It names the newest gallery (its version and the sha256 of its signed manifest) and expires soon (at most
`MAX_TIMESTAMP_DAYS` after it was issued). A door that holds an unexpired one knows its view of the fleet is
current; when it expires (a dead server, or an attacker holding back new messages) the gallery is "stale",
which `gallery/state` and `status` report with the record's age, and which `sync.expiry_policy = "deny"`
treats like an expired gallery. A record never replaces one issued later (no rollback).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from edgeface.sync.errors import Rejected
from edgeface.sync.jsonfields import base64_field, time_field
from edgeface.sync.manifest import manifest_bytes
from edgeface.sync.validate import valid_fleet, valid_version
from edgeface.util.timestamps import rfc3339

TIMESTAMP_FORMAT = "edgeface-timestamp/1"
MAX_TIMESTAMP_BYTES = 64 * 1024
MAX_TIMESTAMP_DAYS = 31


@dataclass(frozen=True, slots=True)
class TimestampMessage:
    record: bytes
    signature: bytes
    cert: bytes | None = None


@dataclass(frozen=True, slots=True)
class TimestampRecord:
    fleet: str
    version: int
    manifest_sha256: str
    issued: datetime
    expires: datetime

    def age_s(self, now: datetime | None = None) -> float:
        return max(0.0, ((now or datetime.now(UTC)) - self.issued).total_seconds())

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires


def timestamp_record_bytes(
    fleet: str, version: int, manifest_sha256: str, issued: datetime, lifetime: timedelta
) -> bytes:
    return manifest_bytes(
        {
            "format": TIMESTAMP_FORMAT,
            "fleet": fleet,
            "version": version,
            "manifest_sha256": manifest_sha256,
            "issued": rfc3339(issued),
            "expires": rfc3339(issued + lifetime),
        }
    )


def timestamp_message_bytes(record: bytes, signature: bytes, cert: bytes | None = None) -> bytes:
    doc = {"record": base64.b64encode(record).decode(), "signature": base64.b64encode(signature).decode()}
    if cert is not None:
        doc["cert"] = base64.b64encode(cert).decode()
    return json.dumps(doc, separators=(",", ":")).encode()


def _json(raw: bytes, what: str) -> dict[str, object]:
    if len(raw) > MAX_TIMESTAMP_BYTES:
        raise Rejected("timestamp_invalid", f"{what} is {len(raw)} bytes, limit {MAX_TIMESTAMP_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected("timestamp_invalid", f"{what} is not JSON ({type(exc).__name__})") from exc
    if not isinstance(doc, dict):
        raise Rejected("timestamp_invalid", f"{what} must be a JSON object")
    return doc


def parse_timestamp_message(raw: bytes) -> TimestampMessage:
    doc = _json(raw, "timestamp message")
    cert = base64_field(doc, "cert", "timestamp_invalid") if "cert" in doc else None
    return TimestampMessage(
        base64_field(doc, "record", "timestamp_invalid"),
        base64_field(doc, "signature", "timestamp_invalid"),
        cert,
    )


def parse_timestamp_record(raw: bytes) -> TimestampRecord:
    """Parse signature-checked record bytes; raises `Rejected("timestamp_invalid")` naming the problem."""
    doc = _json(raw, "timestamp record")
    if doc.get("format") != TIMESTAMP_FORMAT:
        raise Rejected("timestamp_invalid", f"format must be {TIMESTAMP_FORMAT!r}")
    try:
        fleet, version = valid_fleet(doc.get("fleet")), valid_version(doc.get("version"))
    except ValueError as exc:
        raise Rejected("timestamp_invalid", str(exc)) from exc
    digest = doc.get("manifest_sha256")
    if not isinstance(digest, str) or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise Rejected("timestamp_invalid", "'manifest_sha256' must be a lowercase hex sha256")
    issued, expires = (
        time_field(doc, "issued", "timestamp_invalid"),
        time_field(doc, "expires", "timestamp_invalid"),
    )
    if not timedelta(0) < expires - issued <= timedelta(days=MAX_TIMESTAMP_DAYS):
        raise Rejected(
            "timestamp_invalid", f"'expires' must be after 'issued', within {MAX_TIMESTAMP_DAYS} days"
        )
    return TimestampRecord(fleet, version, digest, issued, expires)


@dataclass(frozen=True, slots=True)
class Freshness:
    """What a door can say about how current its gallery is."""

    stale: bool
    age_s: float | None  # seconds since the newest valid timestamp was issued; None: none received
    version: int | None  # the version that timestamp names as newest
    expires: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "stale": self.stale,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "version": self.version,
            "expires": None if self.expires is None else rfc3339(self.expires),
        }


def freshness(record: TimestampRecord | None, required: bool, now: datetime | None = None) -> Freshness:
    """Stale when a timestamp is required (or one was ever seen) and the newest one has expired."""
    if record is None:
        return Freshness(required, None, None, None)
    return Freshness(record.expired(now), record.age_s(now), record.version, record.expires)
