"""The signed bundle manifest (docs/design.md §4): parsed from exact JSON bytes, every field checked.

A manifest is a JSON object::

    {"format": "edgeface-bundle/1", "fleet": str, "version": int >= 1, "created": RFC 3339,
     "expires": RFC 3339 | null, "model_sha256": hex64, "dim": int, "dtype": "float32",
     "count": rows in this bundle, "identities": hex64, "vectors": hex64,
     # a delta only:
     "base_version": int, "remove": [identity id, ...],
     "result": {"count": int, "identities": hex64, "vectors": hex64},
     # optional, written by every `gallery build` since the chunk table is signed (required over MQTT):
     "payload": {"size": int, "sha256": hex64, "chunk_bytes": int, "chunks_sha256": hex64},
     # optional, `gallery build --url-base`: where the payload is served (needs `payload`), see below
     "url": "https://host/path/<payload sha256>",
     # optional (docs/design.md §5): the gallery's calibrated decision and its evidence
     "decision": {"threshold", "margin", "target_fpir", "est_fpir", "est_dir", "n_impostor", "n_genuine"}}

`version` and `base_version` are in 1..2**53-1; `fleet` is one MQTT topic level (`validate.valid_fleet`);
`expires`, when set, is after `created`. `payload` binds the bytes a device fetches to the signature: their
size and sha256, the chunk size they are cut into (every chunk but the last is exactly `chunk_bytes`), and
`chunks_sha256`, the sha256 of the concatenated raw 32-byte sha256 digests of the chunks in order.

`url`, when set, names the one place a device fetches the payload from (HTTP(S), `edgeface.sync.fetch`): it
is content-addressed (its last path segment is `payload.sha256`) and the device reads at most `payload.size`
bytes from it; MQTT chunks are not used for such a bundle.

`identities`/`vectors` are the sha256 of the bundle's identities JSON and vectors `.npy` bytes; for a delta
those hold only the added/updated rows, and `result` holds the sha256s of the gallery the device must end up
with (its `identities.json` compact JSON and `vectors.npy`), so a device proves it applied the delta exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from edgeface.sync.errors import Rejected
from edgeface.sync.jsonfields import time_field
from edgeface.sync.signed_calibration import SignedCalibration, parse_decision
from edgeface.sync.validate import (
    MAX_VERSION,
    check_lifetime,
    valid_chunk_bytes,
    valid_fleet,
    valid_payload_url,
    valid_version,
)

FORMAT = "edgeface-bundle/1"
MAX_MANIFEST_BYTES = 1 << 20
MAX_DIM = 4096
_HEX64 = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ResultHashes:
    count: int
    identities: str
    vectors: str


@dataclass(frozen=True, slots=True)
class PayloadBinding:
    """What the signature says about the fetched bytes: size, sha256 and the chunk table's shape and hash."""

    size: int
    sha256: str
    chunk_bytes: int
    chunks_sha256: str

    def chunk_sizes(self) -> list[int]:
        """The size of every chunk, implied by `size` and `chunk_bytes` (one empty chunk for no payload)."""
        full, rest = divmod(self.size, self.chunk_bytes)
        return [self.chunk_bytes] * full + ([rest] if rest or not full else [])

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "sha256": self.sha256,
            "chunk_bytes": self.chunk_bytes,
            "chunks_sha256": self.chunks_sha256,
        }


def chunk_table_sha256(digests: list[str] | tuple[str, ...]) -> str:
    """sha256 over the raw digests of the chunks, in order (`digests` are lowercase hex)."""
    table = hashlib.sha256()
    for digest in digests:
        table.update(bytes.fromhex(digest))
    return table.hexdigest()


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
    payload: PayloadBinding | None = None
    decision: SignedCalibration | None = None
    url: str | None = None

    @property
    def is_delta(self) -> bool:
        return self.base_version is not None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires is not None and (now or datetime.now(UTC)) >= self.expires


def manifest_bytes(fields: dict[str, Any]) -> bytes:
    """Canonical bytes for signing: sorted keys, compact, UTF-8."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _int(doc: dict[str, object], key: str, low: int, high: int = MAX_VERSION) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Rejected("manifest_invalid", f"{key!r} must be an integer in {low}..{high}, got {value!r:.60}")
    return value


def _hex(doc: dict[str, object], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise Rejected("manifest_invalid", f"{key!r} must be a lowercase hex sha256, got {value!r:.80}")
    return value


def _optional_time(doc: dict[str, object], key: str) -> datetime | None:
    return None if doc.get(key) is None else time_field(doc, key, "manifest_invalid")


def _checked(check: Callable[[Any], T], value: object) -> T:
    """Run a shared `validate` function; its `ValueError` becomes a manifest rejection."""
    try:
        return check(value)
    except ValueError as exc:
        raise Rejected("manifest_invalid", str(exc)) from exc


def _delta_fields(doc: dict[str, object], version: int) -> dict[str, Any]:
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


def _payload_binding(doc: dict[str, object]) -> PayloadBinding | None:
    if "payload" not in doc:
        return None
    payload = doc["payload"]
    keys = {"size", "sha256", "chunk_bytes", "chunks_sha256"}
    if not isinstance(payload, dict) or set(payload) != keys:
        raise Rejected("manifest_invalid", f"'payload' must be an object with exactly {sorted(keys)}")
    return PayloadBinding(
        _int(payload, "size", 0),
        _hex(payload, "sha256"),
        _checked(valid_chunk_bytes, payload["chunk_bytes"]),
        _hex(payload, "chunks_sha256"),
    )


def _url(doc: dict[str, object], binding: PayloadBinding | None) -> str | None:
    if "url" not in doc:
        return None
    if binding is None:
        raise Rejected("manifest_invalid", "'url' needs the 'payload' binding (size and sha256)")
    return _checked(lambda value: valid_payload_url(value, binding.sha256), doc["url"])


def _decode(raw: bytes) -> dict[str, object]:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise Rejected("oversized", f"manifest is {len(raw)} bytes, limit {MAX_MANIFEST_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer beyond the digit limit
        raise Rejected("manifest_not_json", str(exc)) from exc
    except RecursionError as exc:
        raise Rejected("manifest_not_json", "JSON nested too deeply") from exc
    if not isinstance(doc, dict):
        raise Rejected("manifest_not_json", f"manifest must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise Rejected("manifest_invalid", f"format must be {FORMAT!r}, got {doc.get('format')!r:.80}")
    if doc.get("dtype") != "float32":
        raise Rejected("manifest_invalid", f"dtype must be 'float32', got {doc.get('dtype')!r:.80}")
    return doc


def parse_manifest(raw: bytes) -> Manifest:
    """Parse and check manifest bytes; raises `Rejected` naming the first problem."""
    doc = _decode(raw)
    version = _checked(valid_version, doc.get("version"))
    created = time_field(doc, "created", "manifest_invalid")
    expires = _optional_time(doc, "expires")
    _checked(lambda moments: check_lifetime(*moments), (created, expires))
    decision = _checked(parse_decision, doc["decision"]) if "decision" in doc else None
    binding = _payload_binding(doc)
    return Manifest(
        raw=raw,
        fleet=_checked(valid_fleet, doc.get("fleet")),
        version=version,
        created=created,
        expires=expires,
        model_sha256=_hex(doc, "model_sha256"),
        dim=_int(doc, "dim", 1, MAX_DIM),
        dtype="float32",
        count=_int(doc, "count", 0),
        identities=_hex(doc, "identities"),
        vectors=_hex(doc, "vectors"),
        payload=binding,
        decision=decision,
        url=_url(doc, binding),
        **_delta_fields(doc, version),
    )
