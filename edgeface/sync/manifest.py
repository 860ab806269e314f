"""The signed bundle manifest (DESIGN §4): parsed from exact JSON bytes, every field checked.

A manifest is a JSON object::

    {"format": "edgeface-bundle/1", "fleet": str, "version": int >= 1, "created": RFC 3339,
     "expires": RFC 3339 | null, "model_sha256": hex64, "dim": int, "dtype": "float32",
     "count": rows in this bundle, "identities": hex64, "vectors": hex64,
     # a delta only:
     "base_version": int, "remove": [identity id, ...],
     "result": {"count": int, "identities": hex64, "vectors": hex64}}

`identities`/`vectors` are the sha256 of the bundle's identities JSON and vectors `.npy` bytes; for a delta
those hold only the added/updated rows, and `result` holds the sha256s of the gallery the device must end up
with (its `identities.json` compact JSON and `vectors.npy`), so a device proves it applied the delta exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edgeface.sync.errors import Rejected

FORMAT = "edgeface-bundle/1"
MAX_MANIFEST_BYTES = 1 << 20
MAX_DIM = 4096
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ResultHashes:
    count: int
    identities: str
    vectors: str


@dataclass(frozen=True, slots=True)
class Manifest:
    raw: bytes
    fleet: str
    version: int
    created: datetime
    expires: datetime | None
    model_sha256: str
    dim: int
    dtype: str
    count: int
    identities: str
    vectors: str
    base_version: int | None = None
    remove: tuple[str, ...] = ()
    result: ResultHashes | None = None

    @property
    def is_delta(self) -> bool:
        return self.base_version is not None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= self.expires


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def manifest_bytes(fields: dict[str, Any]) -> bytes:
    """Canonical bytes for signing: sorted keys, compact, UTF-8."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _int(doc: dict, key: str, low: int, high: int | None = None) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
        raise Rejected("manifest_invalid", f"{key!r} must be an integer >= {low}, got {value!r}")
    return value


def _hex(doc: dict, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise Rejected("manifest_invalid", f"{key!r} must be a lowercase hex sha256, got {value!r}")
    return value


def _time(doc: dict, key: str, optional: bool = False) -> datetime | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise Rejected("manifest_invalid", f"{key!r} must be an RFC 3339 time with offset, got {value!r}")
    return moment


def _str(doc: dict, key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise Rejected("manifest_invalid", f"{key!r} must be a non-empty string, got {value!r}")
    return value


def _delta_fields(doc: dict, version: int) -> dict[str, Any]:
    if "base_version" not in doc:
        if "remove" in doc or "result" in doc:
            raise Rejected("manifest_invalid", "'remove'/'result' given without 'base_version'")
        return {}
    base = _int(doc, "base_version", 1)
    if base >= version:
        raise Rejected("manifest_invalid", f"base_version {base} must be below version {version}")
    remove = doc.get("remove", [])
    if not isinstance(remove, list) or not all(isinstance(r, str) and r for r in remove):
        raise Rejected("manifest_invalid", "'remove' must be a list of identity ids")
    result = doc.get("result")
    if not isinstance(result, dict):
        raise Rejected("manifest_invalid", "a delta needs 'result' {count, identities, vectors}")
    hashes = ResultHashes(_int(result, "count", 0), _hex(result, "identities"), _hex(result, "vectors"))
    return {"base_version": base, "remove": tuple(remove), "result": hashes}


def parse_manifest(raw: bytes) -> Manifest:
    """Parse and check manifest bytes; raises `Rejected` naming the first problem."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Rejected("oversized", f"manifest is {len(raw)} bytes, limit {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected("manifest_not_json", str(exc)) from exc
    if not isinstance(doc, dict):
        raise Rejected("manifest_not_json", f"manifest must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise Rejected("manifest_invalid", f"format must be {FORMAT!r}, got {doc.get('format')!r}")
    if doc.get("dtype") != "float32":
        raise Rejected("manifest_invalid", f"dtype must be 'float32', got {doc.get('dtype')!r}")
    version = _int(doc, "version", 1)
    return Manifest(
        raw=raw,
        fleet=_str(doc, "fleet"),
        version=version,
        created=_time(doc, "created"),  # type: ignore[arg-type]
        expires=_time(doc, "expires", optional=True),
        model_sha256=_hex(doc, "model_sha256"),
        dim=_int(doc, "dim", 1, MAX_DIM),
        dtype="float32",
        count=_int(doc, "count", 0),
        identities=_hex(doc, "identities"),
        vectors=_hex(doc, "vectors"),
        **_delta_fields(doc, version),
    )
