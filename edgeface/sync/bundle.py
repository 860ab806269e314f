"""Bundle container and the checks that need no device state (docs/design.md §4).

Bundle file (one binary container, nothing in it is unpickled or executed)::

    b"EFBUNDL1"                      8 bytes magic
    u32 big-endian  M                manifest length (<= 1 MiB)
    M bytes                          manifest JSON (exactly the signed bytes)
    64 bytes                         Ed25519 signature over the manifest bytes
    payload                          everything after the signature, up to the end of the file

Payload (also what MQTT chunks carry, concatenated in order)::

    u32 big-endian  I                identities JSON length
    I bytes                          identities JSON: [{"id": str, "name": str, "samples": int}, ...]
    rest                             vectors .npy, C-order little-endian float32 (count, dim); the header is
                                     checked and the data viewed in place: nothing can be unpickled

Sizes are checked against the declared lengths before anything is parsed; trailing or missing bytes are
an error. The payload is limited to `max_payload` bytes (default 256 MiB).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.identity.gallery import Gallery, sha256_bytes
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    PayloadBinding,
    chunk_table_sha256,
    parse_manifest,
)
from edgeface.sync.rawio import check_unit_rows, parse_rows, read_npy_f32
from edgeface.sync.signing import SIGNATURE_BYTES, Ed25519PublicKey, signature_valid
from edgeface.util.files import FileRefused, read_bytes
from edgeface.util.labels import check_label

MAGIC = b"EFBUNDL1"
MAX_PAYLOAD = 256 << 20
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Bundle:
    """The raw parts of a bundle; nothing here is trusted until `verify_bundle` returned."""

    manifest: bytes
    signature: bytes
    payload: bytes | memoryview  # a view into the bundle file's bytes: never copied


@dataclass(frozen=True, slots=True)
class Rows:
    """A verified bundle's rows: identities (in order) and their vectors."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    samples: tuple[int, ...]
    vectors: np.ndarray  # read-only view into `vectors_raw`
    identities_raw: bytes | memoryview  # the verified identities JSON bytes
    vectors_raw: bytes | memoryview  # the verified .npy bytes


def rows_gallery(manifest: Manifest, rows: Rows, version: int | None = None) -> Gallery:
    """The gallery a verified bundle carries (for a delta: its upserted identities)."""
    return Gallery(
        rows.ids, rows.names, rows.samples, rows.vectors, manifest.model_sha256, version or manifest.version
    )


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    manifest: Manifest
    signature: bytes
    rows: Rows


def pack_payload(identities: bytes | memoryview, vectors: bytes | memoryview) -> bytes:
    return _U32.pack(len(identities)) + identities + vectors


def split_payload(payload: bytes | memoryview) -> tuple[memoryview, memoryview]:
    payload = memoryview(payload)
    if len(payload) < _U32.size:
        raise Rejected("payload_invalid", f"payload is {len(payload)} bytes, too short for its header")
    (length,) = _U32.unpack_from(payload)
    if _U32.size + length > len(payload):
        raise Rejected("payload_invalid", f"identities length {length} runs past the payload end")
    return payload[_U32.size : _U32.size + length], payload[_U32.size + length :]


def pack_bundle(bundle: Bundle) -> bytes:
    if len(bundle.signature) != SIGNATURE_BYTES:
        raise Rejected("bad_signature", f"signature must be {SIGNATURE_BYTES} bytes")
    return MAGIC + _U32.pack(len(bundle.manifest)) + bundle.manifest + bundle.signature + bundle.payload


def unpack_bundle(data: bytes, max_payload: int = MAX_PAYLOAD) -> Bundle:
    if not data.startswith(MAGIC):
        raise Rejected("payload_invalid", "not an edgeface bundle (bad magic)")
    if len(data) < len(MAGIC) + _U32.size:
        raise Rejected("payload_invalid", "bundle truncated in its header")
    (length,) = _U32.unpack_from(data, len(MAGIC))
    if length > MAX_MANIFEST_BYTES:
        raise Rejected("oversized", f"manifest is {length} bytes, limit {MAX_MANIFEST_BYTES}")
    start = len(MAGIC) + _U32.size
    payload_at = start + length + SIGNATURE_BYTES
    if payload_at > len(data):
        raise Rejected("payload_invalid", "bundle truncated before its payload")
    if len(data) - payload_at > max_payload:
        raise Rejected("oversized", f"payload is {len(data) - payload_at} bytes, limit {max_payload}")
    view = memoryview(data)
    return Bundle(data[start : start + length], data[start + length : payload_at], view[payload_at:])


def read_bundle(path: Path, max_payload: int = MAX_PAYLOAD) -> Bundle:
    try:
        data = read_bytes(path, max_payload + MAX_MANIFEST_BYTES + 1024, "bundle")
    except FileRefused as exc:
        raise Rejected("oversized" if exc.too_large else "payload_invalid", str(exc)) from None
    return unpack_bundle(data, max_payload)


def check_signature(manifest: bytes, signature: bytes, key: Ed25519PublicKey) -> None:
    if not signature_valid(key, manifest, signature):
        raise Rejected("bad_signature", "Ed25519 signature does not verify with the configured public key")


def _decode_rows(raw: memoryview, expected: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    rows = parse_rows(raw)
    if len(rows) != expected:
        raise Rejected("payload_invalid", f"identities must be a list of {expected} rows, got {len(rows)}")
    ids, names, samples = [], [], []
    for row in rows:
        if not isinstance(row, dict) or set(row) != {"id", "name", "samples"}:
            raise Rejected(
                "payload_invalid", f"identity row must have exactly id, name, samples: {row!r:.80}"
            )
        i, n, s = row["id"], row["name"], row["samples"]
        try:
            check_label(i, "identity id")
            check_label(n, "identity name", allow_empty=True)
        except ValueError as exc:
            raise Rejected("payload_invalid", str(exc)) from None
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise Rejected("payload_invalid", f"identity samples must be an integer >= 0: {row!r:.80}")
        ids.append(i)
        names.append(n)
        samples.append(s)
    if len(set(ids)) != len(ids):
        raise Rejected("payload_invalid", "identity ids are not unique")
    return tuple(ids), tuple(names), tuple(samples)


def _decode_vectors(raw: memoryview, manifest: Manifest) -> np.ndarray:
    vectors = read_npy_f32(raw, manifest.count, manifest.dim)
    problem = check_unit_rows(vectors)
    if problem is not None:
        raise Rejected("payload_invalid", problem)
    return vectors


def verify_payload(manifest: Manifest, payload: bytes | memoryview) -> Rows:
    """Hash and decode a payload against an already signature-checked manifest."""
    identities, vectors = split_payload(payload)
    if sha256_bytes(identities) != manifest.identities:
        raise Rejected("identities_sha256", "identities JSON does not match the manifest's sha256")
    if sha256_bytes(vectors) != manifest.vectors:
        raise Rejected("vectors_sha256", "vectors .npy does not match the manifest's sha256")
    ids, names, samples = _decode_rows(identities, manifest.count)
    return Rows(ids, names, samples, _decode_vectors(vectors, manifest), identities, vectors)


def bind_payload(payload: bytes | memoryview, chunk_bytes: int) -> PayloadBinding:
    """The signed description of `payload` cut into `chunk_bytes` chunks (one pass over the bytes)."""
    view, whole, digests = memoryview(payload), hashlib.sha256(), []
    for start in range(0, len(view), chunk_bytes):
        piece = view[start : start + chunk_bytes]
        whole.update(piece)
        digests.append(hashlib.sha256(piece).hexdigest())
    digests = digests or [hashlib.sha256(b"").hexdigest()]
    return PayloadBinding(len(view), whole.hexdigest(), chunk_bytes, chunk_table_sha256(digests))


def check_binding(manifest: Manifest, payload: bytes | memoryview) -> None:
    """The payload is exactly the one the manifest's `payload` binding signs (bundles older than the
    binding carry none: their content is still covered by the `identities`/`vectors` sha256s)."""
    binding = manifest.payload
    if binding is None:
        return
    if len(payload) != binding.size:
        raise Rejected(
            "payload_sha256", f"payload is {len(payload)} bytes, the manifest signs {binding.size}"
        )
    if bind_payload(payload, binding.chunk_bytes) != binding:
        raise Rejected("payload_sha256", "payload or its chunk table does not match the signed manifest")


def verify_bundle(bundle: Bundle, key: Ed25519PublicKey) -> VerifiedBundle:
    """Every check that needs no device state except expiry: signature, manifest, sha256s, contents."""
    check_signature(bundle.manifest, bundle.signature, key)
    manifest = parse_manifest(bundle.manifest)
    rows = verify_payload(manifest, bundle.payload)
    check_binding(manifest, bundle.payload)
    return VerifiedBundle(manifest, bundle.signature, rows)
