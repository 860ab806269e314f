"""Fuzz the parsers a network peer can reach: manifest, announcement, chunk assembly, and the payload decoders
behind a matching signature. Thousands of generated cases; only the documented `Rejected` may escape.

Reproducible in CI: hypothesis is derandomized (seeded from each test), keeps no example database, and has a
fixed example budget per test and no deadline (the whole module runs in seconds).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeface.identity.gallery import sha256_bytes
from edgeface.server.build import build_bundle
from edgeface.server.signing import Ed25519PrivateKey
from edgeface.sync.bundle import pack_payload, split_payload, unpack_bundle, verify_payload
from edgeface.sync.chunks import (
    ChunkAssembler,
    announcement_bytes,
    check_announcement,
    parse_announcement,
    split_chunks,
)
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import Manifest, manifest_bytes, parse_manifest
from tests.factories import FLEET, make_gallery

pytestmark = pytest.mark.slow  # hypothesis runs hundreds of generated inputs

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHUNK = 512

_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_PARTS = unpack_bundle(
    build_bundle(make_gallery(6, dim=16), fleet=FLEET, version=3, key=_KEY, chunk_bytes=CHUNK)
)
_MANIFEST_DOC: dict[str, Any] = json.loads(_PARTS.manifest)
_CHUNKS = split_chunks(_PARTS.payload, CHUNK)
_ANNOUNCEMENT_DOC: dict[str, Any] = json.loads(
    announcement_bytes(_PARTS.manifest, _PARTS.signature, _PARTS.payload, _CHUNKS)
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _mutate(doc: dict[str, Any], data: st.DataObject, depth: int = 0) -> dict[str, Any]:
    """Replace, delete or add a few keys, recursing into nested objects now and then."""
    doc = dict(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        keys = sorted(doc)
        action = data.draw(st.sampled_from(["replace", "delete", "add", "nest"]))
        key = data.draw(st.sampled_from(keys)) if keys else "x"
        if action == "replace" or (action == "nest" and not isinstance(doc.get(key), dict)):
            doc[key] = data.draw(json_values)
        elif action == "delete":
            doc.pop(key, None)
        elif action == "add":
            doc[data.draw(st.text(max_size=10))] = data.draw(json_values)
        elif depth < 2:
            doc[key] = _mutate(doc[key], data, depth + 1)
    return doc


def _only_rejected(call, *args: object) -> object:
    try:
        return call(*args)
    except Rejected:
        return None


@FUZZ
@given(st.binary(max_size=400))
def test_manifest_parser_on_arbitrary_bytes(raw: bytes) -> None:
    _only_rejected(parse_manifest, raw)


@FUZZ
@given(st.data())
def test_manifest_parser_on_mutated_manifests(data: st.DataObject) -> None:
    raw = json.dumps(_mutate(_MANIFEST_DOC, data)).encode()
    manifest = _only_rejected(parse_manifest, raw)
    assert manifest is None or isinstance(manifest, Manifest)


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 1 << 30))
def test_announcement_parser_on_arbitrary_bytes(raw: bytes, max_payload: int) -> None:
    _only_rejected(parse_announcement, raw, max_payload)


@FUZZ
@given(st.data())
def test_announcement_parser_and_check_on_mutated_announcements(data: st.DataObject) -> None:
    doc = _mutate(_ANNOUNCEMENT_DOC, data)
    announcement = _only_rejected(parse_announcement, json.dumps(doc).encode(), 1 << 20)
    if announcement is not None:
        manifest = parse_manifest(_PARTS.manifest)
        _only_rejected(check_announcement, announcement, manifest)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(-2, len(_CHUNKS) + 1),
            st.one_of(st.binary(max_size=CHUNK + 2), st.sampled_from(_CHUNKS)),
            st.booleans(),
        ),
        max_size=12,
    )
)
def test_chunk_assembler_on_any_sequence_of_chunks(steps: list[tuple[int, bytes, bool]]) -> None:
    announcement = parse_announcement(json.dumps(_ANNOUNCEMENT_DOC).encode(), 1 << 20)
    assembler = ChunkAssembler(announcement)
    for n, data, use_true in steps:
        payload = _CHUNKS[n] if use_true and 0 <= n < len(_CHUNKS) else data
        if _only_rejected(assembler.add, n, payload) is None:
            break
        assert assembler.buffered <= announcement.size
    result = _only_rejected(assembler.payload)
    if result is not None:
        assert bytes(result) == bytes(_PARTS.payload)


def _npy(data: st.DataObject) -> bytes:
    kind = data.draw(st.sampled_from(["random", "header", "good"]))
    if kind == "random":
        return data.draw(st.binary(max_size=300))
    rows = data.draw(st.integers(0, 3))
    array = np.eye(max(rows, 1), 16, dtype=data.draw(st.sampled_from(["<f4", ">f4", "<f8", "<i4"])))[:rows]
    buffer = io.BytesIO()
    np.save(buffer, array)
    raw = bytearray(buffer.getvalue())
    if kind == "header" and raw:
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, min(len(raw), 128) - 1))
            raw[at] = data.draw(st.integers(0, 255))
    return bytes(raw)


identity_rows = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(
        st.fixed_dictionaries(
            {"id": json_values, "name": json_values, "samples": json_values},
            optional={"extra": json_values},
        ),
        max_size=4,
    ).map(lambda v: json.dumps(v).encode()),
    st.integers(1, 5000).map(lambda depth: b"[" * depth + b"]" * depth),
)


@FUZZ
@given(st.data(), identity_rows)
def test_payload_decoders_behind_matching_hashes(data: st.DataObject, identities: bytes) -> None:
    """Hashes match, so the JSON rows and `.npy` decoders are reached with hostile content."""
    vectors = _npy(data)
    count = data.draw(st.integers(0, 4))
    fields = _MANIFEST_DOC | {
        "identities": sha256_bytes(identities),
        "vectors": sha256_bytes(vectors),
        "count": count,
        "dim": 16,
    }
    manifest = parse_manifest(manifest_bytes(fields))
    payload = pack_payload(identities, vectors)
    if data.draw(st.booleans()):
        payload = payload[: data.draw(st.integers(0, len(payload)))]
    rows = _only_rejected(verify_payload, manifest, payload)
    if rows is not None:
        assert len(rows.ids) == count and rows.vectors.shape == (count, 16)
    _only_rejected(split_payload, payload)


def test_the_fuzzed_inputs_are_valid_to_begin_with() -> None:
    """The seeds the mutators start from parse: the fuzz explores around real messages, not only noise."""
    manifest = parse_manifest(_PARTS.manifest)
    announcement = parse_announcement(json.dumps(_ANNOUNCEMENT_DOC).encode(), 1 << 20)
    check_announcement(announcement, manifest)
    assembler = ChunkAssembler(announcement)
    for n in reversed(range(len(_CHUNKS))):
        assembler.add(n, _CHUNKS[n])
    assert len(verify_payload(manifest, assembler.payload()).ids) == 6
    with pytest.raises(Rejected):
        parse_manifest(b"[" * 100_000 + b"]" * 100_000)
