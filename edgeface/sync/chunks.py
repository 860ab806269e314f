"""The MQTT announcement (retained on `{prefix}/fleet/{fleet}/gallery`) and payload chunking.

Announcement JSON::

    {"format": "edgeface-announce/1",
     "manifest": base64 of the exact signed manifest bytes, "signature": base64 (64 bytes),
     "payload": {"size": int, "sha256": hex, "chunks": [{"size": int, "sha256": hex}, ...]}}

Chunk `n` is retained on `{prefix}/fleet/{fleet}/gallery/{version}/{n}`; each is at most 256 KiB, and a
bundle travels as chunks only up to `MAX_MQTT_CHUNKS` of them (a default mosquitto queues 1,000 messages per
client and drops the rest: larger bundles go by URL). Instead of `payload.chunks` an announcement of a
bundle whose signed manifest names a `url` carries `payload.url` (that same URL; the device fetches only the
signed one, `edgeface.sync.fetch`). A URL announcement of a full bundle may also carry `chain`: the signed
manifests of the recent deltas that lead to it, oldest first (`[{"manifest": b64, "signature": b64}, ...]`,
each naming its own payload URL), so a door that missed some catches up by deltas (`edgeface.sync.plan`).
Any announcement may carry `cert` (base64 of the signing key's certificate; a chain link may carry its own)
and `revocations` (base64 of the root's revocation list) for doors that trust a root key (`edgeface.sync.trust`).

Nothing in the announcement outside the signed manifest is trusted: the manifest's `payload` binding signs
the payload size, its sha256, the chunk size and the sha256 of the chunk table. `check_announcement` refuses
an announcement whose sizes differ from the signed ones before anything is subscribed or allocated, and the
device checks the assembled payload (and so every announced chunk hash) against the binding before use.
Chunk buffers grow as chunks arrive; nothing is allocated up front.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

from edgeface.identity.gallery import sha256_bytes
from edgeface.sync.errors import Rejected
from edgeface.sync.jsonfields import base64_field
from edgeface.sync.manifest import MAX_MANIFEST_BYTES, Manifest

ANNOUNCE_FORMAT = "edgeface-announce/1"
CHUNK_BYTES = 256 * 1024
# mosquitto's defaults: 1,000 queued + 20 in flight per client; room is left for the announcement and state
MAX_MQTT_CHUNKS = 960
MAX_CHAIN = 64  # recent deltas a URL announcement may carry for doors that missed some
MAX_ANNOUNCEMENT_BYTES = 4 * MAX_MANIFEST_BYTES
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class ChunkSpec:
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Announcement:
    manifest: bytes
    signature: bytes
    size: int
    sha256: str
    chunks: tuple[ChunkSpec, ...]
    url: str | None = None
    chain: tuple[tuple[bytes, bytes, bytes | None], ...] = ()  # recent deltas (manifest, signature, cert)
    cert: bytes | None = None  # the signing key's certificate (doors that trust a root key)
    revocations: bytes | None = None  # the root's newest revocation list


def split_chunks(payload: bytes | memoryview, chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    if not 0 < chunk_bytes <= CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in (0, {CHUNK_BYTES}], got {chunk_bytes}")
    return [bytes(payload[i : i + chunk_bytes]) for i in range(0, len(payload), chunk_bytes)] or [b""]


def announcement_bytes(
    manifest: bytes,
    signature: bytes,
    payload: bytes | memoryview,
    chunks: list[bytes],
    url: str | None = None,
    extra: dict[str, object] | None = None,
) -> bytes:
    """The announcement of a bundle sent as `chunks`, or (with `url`, then `chunks` is empty) by URL;
    `extra` adds top-level fields (`chain`, `cert`, `revocations`)."""
    fetch: dict[str, object] = (
        {"url": url}
        if url is not None
        else {"chunks": [{"size": len(c), "sha256": sha256_bytes(c)} for c in chunks]}
    )
    doc = {
        "format": ANNOUNCE_FORMAT,
        "manifest": base64.b64encode(manifest).decode(),
        "signature": base64.b64encode(signature).decode(),
        "payload": {"size": len(payload), "sha256": sha256_bytes(payload)} | fetch,
    } | (extra or {})
    return json.dumps(doc, separators=(",", ":")).encode()


def _chunk(item: object) -> ChunkSpec:
    if not isinstance(item, dict):
        raise Rejected("announcement_invalid", "each chunk must be {size, sha256}")
    size, digest = item.get("size"), item.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= CHUNK_BYTES:
        raise Rejected("oversized", f"chunk size must be 0..{CHUNK_BYTES}, got {size!r}")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise Rejected("announcement_invalid", f"chunk sha256 must be lowercase hex, got {digest!r:.80}")
    return ChunkSpec(size, digest)


def _optional_b64(doc: dict[str, object], key: str) -> bytes | None:
    return base64_field(doc, key, "announcement_invalid") if doc.get(key) is not None else None


def _chain(items: object) -> tuple[tuple[bytes, bytes, bytes | None], ...]:
    """The catch-up chain of a URL announcement: each link a signed delta manifest (checked by the client)."""
    if not isinstance(items, list) or len(items) > MAX_CHAIN:
        raise Rejected("announcement_invalid", f"'chain' must be a list of at most {MAX_CHAIN} deltas")
    links = []
    for item in items:
        if not isinstance(item, dict):
            raise Rejected("announcement_invalid", "each chain link must be {manifest, signature}")
        links.append(
            (
                base64_field(item, "manifest", "announcement_invalid"),
                base64_field(item, "signature", "announcement_invalid"),
                _optional_b64(item, "cert"),
            )
        )
    return tuple(links)


def parse_announcement(raw: bytes, max_payload: int) -> Announcement:
    """Parse the retained announcement; an oversized payload is rejected here, before any chunk is buffered."""
    if len(raw) > MAX_ANNOUNCEMENT_BYTES:
        raise Rejected("oversized", f"announcement is {len(raw)} bytes, limit {MAX_ANNOUNCEMENT_BYTES}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON, or an integer beyond the digit limit
        raise Rejected("announcement_invalid", f"announcement is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise Rejected("announcement_invalid", "announcement JSON is nested too deeply") from exc
    if not isinstance(doc, dict) or doc.get("format") != ANNOUNCE_FORMAT:
        raise Rejected("announcement_invalid", f"announcement format must be {ANNOUNCE_FORMAT!r}")
    payload = doc.get("payload")
    if not isinstance(payload, dict):
        raise Rejected("announcement_invalid", "announcement needs a 'payload' object")
    size, items, url = payload.get("size"), payload.get("chunks"), payload.get("url")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise Rejected("announcement_invalid", f"payload size must be an integer, got {size!r:.40}")
    if size > max_payload:
        raise Rejected("oversized", f"payload is {size} bytes, this device accepts at most {max_payload}")
    digest = payload.get("sha256")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise Rejected("announcement_invalid", "payload needs a lowercase hex 'sha256'")
    manifest, signature = (
        base64_field(doc, "manifest", "announcement_invalid"),
        base64_field(doc, "signature", "announcement_invalid"),
    )
    cert, revocations = _optional_b64(doc, "cert"), _optional_b64(doc, "revocations")
    if items is None and isinstance(url, str):
        chain = _chain(doc.get("chain", []))
        return Announcement(manifest, signature, size, digest, (), url[:4096], chain, cert, revocations)
    if not isinstance(items, list) or not items:
        raise Rejected("announcement_invalid", "payload needs a non-empty 'chunks' list or a 'url'")
    if len(items) > MAX_MQTT_CHUNKS:
        raise Rejected(
            "oversized", f"{len(items)} chunks, more than {MAX_MQTT_CHUNKS} (a broker queue): publish by URL"
        )
    chunks = tuple(_chunk(item) for item in items)
    if sum(c.size for c in chunks) != size:
        raise Rejected("announcement_invalid", "chunk sizes do not add up to the payload size")
    return Announcement(manifest, signature, size, digest, chunks, None, (), cert, revocations)


def check_announcement(announcement: Announcement, manifest: Manifest) -> None:
    """The announcement's sizes are the signed ones (call after the signature verified, before fetching)."""
    binding = manifest.payload
    if binding is None:
        raise Rejected(
            "announcement_invalid",
            "the signed manifest carries no 'payload' binding (built by an older `gallery build`: rebuild it)",
        )
    if announcement.size != binding.size:
        raise Rejected(
            "announcement_invalid", f"payload size {announcement.size} is not the signed {binding.size}"
        )
    if manifest.url is not None or announcement.url is not None:
        if announcement.url != manifest.url:
            raise Rejected("announcement_invalid", "the announced URL is not the one the manifest signs")
        return
    sizes = [chunk.size for chunk in announcement.chunks]
    if sizes != binding.chunk_sizes():
        raise Rejected(
            "announcement_invalid",
            f"chunk table ({len(sizes)} chunks) is not the signed one "
            f"({len(binding.chunk_sizes())} chunks of {binding.chunk_bytes} bytes)",
        )


class ChunkAssembler:
    """Collects one payload's chunks in order; memory grows with what arrived, never beyond the signed size.

    Chunks that arrive ahead of a missing one are parked until it comes; a chunk that arrives twice (a
    re-subscription re-delivers retained chunks) is ignored.
    """

    def __init__(self, announcement: Announcement) -> None:
        self._spec = announcement
        self._buffer = bytearray()
        self._next = 0  # chunks [0, _next) are in _buffer
        self._parked: dict[int, bytes] = {}

    @property
    def missing(self) -> list[int]:
        return [n for n in range(self._next, len(self._spec.chunks)) if n not in self._parked]

    @property
    def complete(self) -> bool:
        return self._next == len(self._spec.chunks)

    @property
    def buffered(self) -> int:
        return len(self._buffer) + sum(len(c) for c in self._parked.values())

    def add(self, n: int, data: bytes) -> bool:
        """Store chunk `n`; True when the payload is complete. Raises `Rejected` for a bad chunk."""
        if not 0 <= n < len(self._spec.chunks):
            raise Rejected("announcement_invalid", f"chunk {n} is outside 0..{len(self._spec.chunks) - 1}")
        if n < self._next or n in self._parked:
            return self.complete
        spec = self._spec.chunks[n]
        if len(data) > spec.size:
            raise Rejected("oversized", f"chunk {n} is {len(data)} bytes, announced {spec.size}")
        if len(data) < spec.size:
            raise Rejected("chunk_truncated", f"chunk {n} is {len(data)} bytes, announced {spec.size}")
        if sha256_bytes(data) != spec.sha256:
            raise Rejected("chunk_sha256", f"chunk {n} does not match its sha256")
        self._parked[n] = bytes(data)
        while self._next in self._parked:
            self._buffer += self._parked.pop(self._next)
            self._next += 1
        return self.complete

    def payload(self) -> memoryview:
        """The reassembled payload (a view of this assembler's buffer: use it, then drop the assembler).

        Its integrity against the signature is checked by the device before use (`bundle.check_binding`)."""
        if not self.complete:
            raise Rejected("chunk_missing", f"chunks {self.missing[:10]} never arrived")
        return memoryview(self._buffer)
