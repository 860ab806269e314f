"""The retained announcement and payload chunks (edgeface/sync/chunks.py): parse, check against the signed
binding, reassemble.

`test_sync_bounds.py` checks that nothing is allocated before the binding is trusted and `test_sync_fuzz.py`
arbitrary inputs; here: the announcement's rules one by one, the binding check, and the assembler's handling
of order, repeats and bad chunks, with known payloads.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from edgeface.sync.chunks import (
    ANNOUNCE_FORMAT,
    CHUNK_BYTES,
    MAX_ANNOUNCEMENT_BYTES,
    MAX_MQTT_CHUNKS,
    Announcement,
    ChunkAssembler,
    ChunkSpec,
    announcement_bytes,
    check_announcement,
    parse_announcement,
    split_chunks,
)
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import FORMAT, manifest_bytes, parse_manifest

PAYLOAD = b"".join(
    hashlib.sha256(n.to_bytes(2, "big")).digest() for n in range(320)
)  # 10,240 bytes, no repeats
MANIFEST = b'{"signed": "manifest bytes"}'
SIGNATURE = bytes(range(64))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def announcement_doc(chunk_bytes: int = 4096) -> dict[str, Any]:
    chunks = split_chunks(PAYLOAD, chunk_bytes)
    return json.loads(announcement_bytes(MANIFEST, SIGNATURE, PAYLOAD, chunks))


def rejected(doc: dict[str, Any] | bytes, max_payload: int = 1 << 20) -> Rejected:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(Rejected) as caught:
        parse_announcement(raw, max_payload)
    return caught.value


def manifest_binding(size: int | None, chunk_bytes: int = 4096) -> Any:
    """A parsed manifest whose signed payload binding has this size and chunk size (None: no binding)."""
    doc: dict[str, Any] = {
        "format": FORMAT, "fleet": "lobby", "version": 1, "created": "2026-03-01T12:00:00+00:00",
        "model_sha256": "ab" * 32, "dim": 8, "dtype": "float32", "count": 1,
        "identities": "11" * 32, "vectors": "22" * 32,
    }  # fmt: skip
    if size is not None:
        doc["payload"] = {
            "size": size,
            "sha256": "33" * 32,
            "chunk_bytes": chunk_bytes,
            "chunks_sha256": "44" * 32,
        }
    return parse_manifest(manifest_bytes(doc))


# --- splitting and the announcement round trip ---------------------------------------------------------------
def test_split_chunks_cuts_at_chunk_bytes_and_keeps_every_byte() -> None:
    chunks = split_chunks(PAYLOAD, 4096)
    assert [len(c) for c in chunks] == [4096, 4096, 2048] and b"".join(chunks) == PAYLOAD
    assert split_chunks(b"", 4096) == [b""]  # an empty payload is one empty chunk
    assert split_chunks(memoryview(PAYLOAD), CHUNK_BYTES) == [PAYLOAD]
    for bad in (0, CHUNK_BYTES + 1):
        with pytest.raises(ValueError, match="chunk_bytes must be in"):
            split_chunks(PAYLOAD, bad)


def test_an_announcement_round_trips() -> None:
    chunks = split_chunks(PAYLOAD, 4096)
    raw = announcement_bytes(MANIFEST, SIGNATURE, PAYLOAD, chunks)
    doc = json.loads(raw)
    assert doc["format"] == ANNOUNCE_FORMAT and base64.b64decode(doc["manifest"]) == MANIFEST
    parsed = parse_announcement(raw, max_payload=len(PAYLOAD))
    assert parsed == Announcement(
        MANIFEST, SIGNATURE, len(PAYLOAD), sha(PAYLOAD), tuple(ChunkSpec(len(c), sha(c)) for c in chunks)
    )


# --- the announcement's rules ---------------------------------------------------------------------------------
def test_the_payload_limit_is_inclusive_and_checked_before_the_chunks() -> None:
    assert parse_announcement(json.dumps(announcement_doc()).encode(), len(PAYLOAD)).size == len(PAYLOAD)
    doc = announcement_doc()
    doc["payload"]["chunks"] = "not even a list"
    error = rejected(doc, max_payload=len(PAYLOAD) - 1)
    assert error.code == "oversized" and f"payload is {len(PAYLOAD)} bytes" in error.detail


def test_an_announcement_over_4_mib_is_refused_unread() -> None:
    assert rejected(b" " * (MAX_ANNOUNCEMENT_BYTES + 1)).code == "oversized"


def change(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = announcement_doc()
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "code", "detail"),
    [
        (("format",), "edgeface-announce/2", "announcement_invalid", "announcement format must be"),
        (("payload",), KeyError, "announcement_invalid", "needs a 'payload' object"),
        (("payload", "size"), -1, "announcement_invalid", "payload size must be an integer"),
        (("payload", "size"), True, "announcement_invalid", "payload size must be an integer"),
        (("payload", "size"), "10240", "announcement_invalid", "payload size must be an integer"),
        (("payload", "chunks"), [], "announcement_invalid", "non-empty 'chunks' list"),
        (("payload", "chunks"), KeyError, "announcement_invalid", "non-empty 'chunks' list"),
        (("payload", "sha256"), "AB" * 32, "announcement_invalid", "lowercase hex 'sha256'"),
        (("payload", "size"), 10_241, "announcement_invalid", "do not add up to the payload size"),
        (("manifest",), "not base64!", "announcement_invalid", "'manifest' must be base64"),
        (("signature",), KeyError, "announcement_invalid", "'signature' must be base64"),
    ],
)
def test_announcement_rules(path: tuple[str, ...], value: Any, code: str, detail: str) -> None:
    error = rejected(change(path, value))
    assert error.code == code and detail in error.detail


@pytest.mark.parametrize(
    ("chunk", "code", "detail"),
    [
        ({"size": CHUNK_BYTES + 1, "sha256": "ab" * 32}, "oversized", "chunk size must be 0..262144"),
        ({"size": -1, "sha256": "ab" * 32}, "oversized", "chunk size must be 0..262144"),
        ({"size": 1.0, "sha256": "ab" * 32}, "oversized", "chunk size must be"),
        ({"size": 1, "sha256": "AB" * 32}, "announcement_invalid", "chunk sha256 must be lowercase hex"),
        ([1, "ab" * 32], "announcement_invalid", "each chunk must be {size, sha256}"),
    ],
)
def test_each_chunk_spec_is_checked(chunk: Any, code: str, detail: str) -> None:
    doc = announcement_doc()
    doc["payload"]["chunks"][0] = chunk
    error = rejected(doc)
    assert error.code == code and detail in error.detail


def test_a_url_announcement_must_carry_the_url_the_manifest_signs() -> None:
    doc = announcement_doc()
    doc["payload"] = {"size": len(PAYLOAD), "sha256": sha(PAYLOAD), "url": "https://example.invalid/bundle"}
    announcement = parse_announcement(json.dumps(doc).encode(), 1 << 20)
    assert announcement.url == "https://example.invalid/bundle" and announcement.chunks == ()
    with pytest.raises(Rejected, match="announced URL is not the one the manifest signs"):
        check_announcement(announcement, manifest_binding(len(PAYLOAD), 4096))  # signs no URL


def test_more_chunks_than_a_broker_queue_holds_are_refused_naming_the_url_path() -> None:
    doc = announcement_doc()
    doc["payload"]["chunks"] = [{"size": 1, "sha256": "ab" * 32}] * (MAX_MQTT_CHUNKS + 1)
    doc["payload"]["size"] = MAX_MQTT_CHUNKS + 1
    problem = rejected(doc)
    assert problem.code == "oversized" and "publish by URL" in problem.detail


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"{", b"[" * 100_000, b"[]", b"null"])
def test_bytes_that_are_not_an_announcement_object(raw: bytes) -> None:
    assert rejected(raw).code == "announcement_invalid"


# --- against the signed binding --------------------------------------------------------------------------------
def test_the_announced_sizes_must_be_the_signed_ones() -> None:
    announcement = parse_announcement(
        announcement_bytes(MANIFEST, SIGNATURE, PAYLOAD, split_chunks(PAYLOAD, 4096)), 1 << 20
    )
    check_announcement(announcement, manifest_binding(len(PAYLOAD), 4096))
    with pytest.raises(Rejected, match="payload size 10240 is not the signed 10241"):
        check_announcement(announcement, manifest_binding(len(PAYLOAD) + 1, 4096))
    with pytest.raises(
        Rejected, match=r"chunk table \(3 chunks\) is not the signed one \(5 chunks of 2048 bytes\)"
    ):
        check_announcement(announcement, manifest_binding(len(PAYLOAD), 2048))
    reshuffled = parse_announcement(  # same total, cut differently
        announcement_bytes(
            MANIFEST, SIGNATURE, PAYLOAD, [PAYLOAD[:2048], PAYLOAD[2048:6144], PAYLOAD[6144:]]
        ),
        1 << 20,
    )
    with pytest.raises(Rejected, match="chunk table"):
        check_announcement(reshuffled, manifest_binding(len(PAYLOAD), 4096))


def test_a_manifest_without_a_binding_cannot_be_fetched() -> None:
    announcement = parse_announcement(json.dumps(announcement_doc()).encode(), 1 << 20)
    unbound = manifest_binding(None)
    with pytest.raises(Rejected, match="carries no 'payload' binding") as caught:
        check_announcement(announcement, unbound)
    assert caught.value.code == "announcement_invalid"


# --- reassembly -------------------------------------------------------------------------------------------------
def assembler(chunk_bytes: int = 4096) -> tuple[ChunkAssembler, list[bytes]]:
    chunks = split_chunks(PAYLOAD, chunk_bytes)
    spec = parse_announcement(announcement_bytes(MANIFEST, SIGNATURE, PAYLOAD, chunks), 1 << 20)
    return ChunkAssembler(spec), chunks


def test_chunks_in_any_order_reassemble_the_payload() -> None:
    collector, chunks = assembler(2048)  # five chunks
    order = [3, 1, 4, 0, 2]
    done = [collector.add(n, chunks[n]) for n in order]
    assert done == [False, False, False, False, True] and collector.complete
    assert bytes(collector.payload()) == PAYLOAD


def test_what_is_missing_and_buffered_is_reported_as_chunks_arrive() -> None:
    collector, chunks = assembler(2048)
    assert collector.missing == [0, 1, 2, 3, 4] and collector.buffered == 0
    collector.add(2, chunks[2])
    assert collector.missing == [0, 1, 3, 4] and collector.buffered == 2048
    collector.add(0, chunks[0])
    assert collector.missing == [1, 3, 4] and collector.buffered == 4096
    with pytest.raises(Rejected, match=r"chunks \[1, 3, 4\] never arrived") as caught:
        collector.payload()
    assert caught.value.code == "chunk_missing"


def test_a_chunk_delivered_twice_is_ignored() -> None:
    collector, chunks = assembler()
    collector.add(0, chunks[0])
    collector.add(1, chunks[1])
    assert not collector.add(0, b"x")  # already taken: not even checked again
    assert not collector.add(1, chunks[1])
    assert collector.add(2, chunks[2]) and collector.add(2, chunks[2])  # a repeat after completion
    assert bytes(collector.payload()) == PAYLOAD


@pytest.mark.parametrize(
    ("n", "data", "code"),
    [
        (3, b"", "announcement_invalid"),
        (-1, b"", "announcement_invalid"),
        (0, PAYLOAD[:4096] + b"!", "oversized"),
        (0, PAYLOAD[:4095], "chunk_truncated"),
        (0, PAYLOAD[4096:8192], "chunk_sha256"),
    ],
    ids=["beyond-the-table", "negative", "longer", "shorter", "other-bytes"],
)
def test_a_bad_chunk_is_rejected_and_not_kept(n: int, data: bytes, code: str) -> None:
    collector, chunks = assembler()
    with pytest.raises(Rejected) as caught:
        collector.add(n, data)
    assert caught.value.code == code
    assert collector.buffered == 0 and collector.missing == [0, 1, 2]
    assert not collector.add(0, chunks[0])  # the right chunk is still taken afterwards
