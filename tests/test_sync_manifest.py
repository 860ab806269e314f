"""`parse_manifest` and the payload binding (docs/design.md §4), on manifest documents written out field by
field.

No signature is involved: the parser sees the bytes the signature covered. `test_sync_bundle.py` checks a
few field errors through signed bundles and `test_sync_fuzz.py` that nothing but `Rejected` ever escapes;
here: each field's rule, the delta and payload sub-objects, the decoding limits and expiry.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import (
    FORMAT,
    MAX_DIM,
    MAX_MANIFEST_BYTES,
    PayloadBinding,
    ResultHashes,
    chunk_table_sha256,
    manifest_bytes,
    parse_manifest,
)
from edgeface.sync.validate import CHUNK_BYTES_MAX, MAX_VERSION

H1, H2, H3 = "11" * 32, "22" * 32, "33" * 32
DOC: dict[str, Any] = {
    "format": FORMAT,
    "fleet": "lobby",
    "version": 5,
    "created": "2026-03-01T12:00:00+00:00",
    "expires": None,
    "model_sha256": "ab" * 32,
    "dim": 128,
    "dtype": "float32",
    "count": 3,
    "identities": H1,
    "vectors": H2,
}
DELTA = {"base_version": 4, "remove": ["p1", "p2"], "result": {"count": 7, "identities": H3, "vectors": H1}}
PAYLOAD = {"size": 10_000, "sha256": H1, "chunk_bytes": 4096, "chunks_sha256": H2}


def parse(doc: dict[str, Any]) -> Any:
    return parse_manifest(manifest_bytes(doc))


def rejected(doc: dict[str, Any] | bytes) -> Rejected:
    with pytest.raises(Rejected) as caught:
        parse_manifest(doc if isinstance(doc, bytes) else manifest_bytes(doc))
    return caught.value


def test_a_full_manifest_parses_to_typed_fields() -> None:
    raw = manifest_bytes(DOC)
    manifest = parse_manifest(raw)
    assert manifest.raw is raw and manifest.fleet == "lobby" and manifest.version == 5
    assert manifest.created == datetime(2026, 3, 1, 12, tzinfo=UTC) and manifest.expires is None
    assert (manifest.dim, manifest.dtype, manifest.count) == (128, "float32", 3)
    assert (manifest.identities, manifest.vectors) == (H1, H2)
    assert not manifest.is_delta and manifest.remove == () and manifest.result is None
    assert manifest.payload is None and manifest.decision is None


def test_manifest_bytes_are_canonical() -> None:
    assert manifest_bytes({"b": 1, "a": "é", "c": [1, {"z": 0, "y": None}]}) == (
        '{"a":"é","b":1,"c":[1,{"y":null,"z":0}]}'.encode()
    )
    assert manifest_bytes(dict(reversed(list(DOC.items())))) == manifest_bytes(DOC)


# --- times ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, tzinfo=UTC)),
        ("2026-03-01T14:00:00+02:00", datetime(2026, 3, 1, 14, tzinfo=timezone(timedelta(hours=2)))),
        ("2026-03-01T12:00:00.123456+00:00", datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_times_carry_an_offset(created: str, expected: datetime) -> None:
    assert parse(DOC | {"created": created}).created == expected


@pytest.mark.parametrize(
    "created", ["2026-03-01T12:00:00", "yesterday", 1772366400, None, "2026-03-01T12:00:00+00:00" + " " * 40]
)
def test_a_time_without_offset_or_not_a_time_is_refused(created: object) -> None:
    error = rejected(DOC | {"created": created})
    assert (
        error.code == "manifest_invalid" and "'created' must be an RFC 3339 time with offset" in error.detail
    )


def test_expiry_is_after_creation_and_reached_at_the_instant() -> None:
    expires = "2026-04-01T00:00:00+00:00"
    manifest = parse(DOC | {"expires": expires})
    moment = datetime(2026, 4, 1, tzinfo=UTC)
    assert manifest.expires == moment
    assert not manifest.expired(moment - timedelta(microseconds=1)) and manifest.expired(moment)
    assert not parse(DOC).expired(datetime(9999, 1, 1, tzinfo=UTC))  # no expiry, never expired
    assert "is not after created" in rejected(DOC | {"expires": DOC["created"]}).detail
    assert "days after created" in rejected(DOC | {"expires": "2200-01-01T00:00:00+00:00"}).detail


# --- plain fields ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dim", "ok"), [(1, True), (MAX_DIM, True), (0, False), (MAX_DIM + 1, False), (128.0, False)]
)
def test_dim_is_1_to_4096(dim: object, ok: bool) -> None:
    if ok:
        assert parse(DOC | {"dim": dim}).dim == dim
    else:
        assert "'dim' must be an integer in 1..4096" in rejected(DOC | {"dim": dim}).detail


@pytest.mark.parametrize(
    ("count", "ok"), [(0, True), (MAX_VERSION, True), (-1, False), (MAX_VERSION + 1, False), (False, False)]
)
def test_count_is_a_non_negative_integer(count: object, ok: bool) -> None:
    if ok:
        assert parse(DOC | {"count": count}).count == count
    else:
        assert rejected(DOC | {"count": count}).code == "manifest_invalid"


@pytest.mark.parametrize("key", ["model_sha256", "identities", "vectors"])
@pytest.mark.parametrize("value", ["AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, None, 5])
def test_hashes_are_64_lowercase_hex(key: str, value: object) -> None:
    error = rejected(DOC | {key: value})
    assert error.code == "manifest_invalid" and f"'{key}' must be a lowercase hex sha256" in error.detail


@pytest.mark.parametrize("key", [k for k in DOC if k not in ("expires",)])
def test_every_required_field_is_required(key: str) -> None:
    doc = {k: v for k, v in DOC.items() if k != key}
    assert rejected(doc).code == "manifest_invalid"


def test_fleet_and_version_use_the_shared_bounds() -> None:
    assert rejected(DOC | {"fleet": "a/b"}).detail.startswith("fleet 'a/b' must be a single MQTT topic level")
    assert rejected(DOC | {"version": MAX_VERSION + 1}).detail.startswith("version must be in 1..")
    assert parse(DOC | {"version": MAX_VERSION}).version == MAX_VERSION


# --- deltas ---------------------------------------------------------------------------------------------------
def test_a_delta_names_its_base_what_it_removes_and_the_result() -> None:
    manifest = parse(DOC | DELTA)
    assert manifest.is_delta and manifest.base_version == 4 and manifest.remove == ("p1", "p2")
    assert manifest.result == ResultHashes(7, H3, H1)
    assert parse(DOC | DELTA | {"remove": []}).remove == ()
    assert parse(DOC | {k: v for k, v in DELTA.items() if k != "remove"}).remove == ()


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"base_version": 5}, "base_version 5 must be below version 5"),
        ({"base_version": 0}, "'base_version' must be an integer in 1.."),
        ({"remove": "p1"}, "'remove' must be a list of identity ids"),
        ({"remove": ["p1", ""]}, "'remove' must be a list of identity ids"),
        ({"remove": [1]}, "'remove' must be a list of identity ids"),
        ({"result": None}, "a delta needs 'result' {count, identities, vectors}"),
        ({"result": {"count": 7, "identities": H3}}, "'vectors' must be a lowercase hex sha256"),
        ({"result": {"count": -1, "identities": H3, "vectors": H1}}, "'count' must be an integer"),
    ],
)
def test_delta_fields_are_checked(change: dict, detail: str) -> None:
    error = rejected(DOC | DELTA | change)
    assert error.code == "manifest_invalid" and detail in error.detail


@pytest.mark.parametrize("key", ["remove", "result"])
def test_delta_fields_without_a_base_are_refused(key: str) -> None:
    assert "given without 'base_version'" in rejected(DOC | {key: DELTA[key]}).detail


# --- payload binding -------------------------------------------------------------------------------------------
def test_the_payload_binding_is_parsed_and_its_chunk_sizes_follow() -> None:
    binding = parse(DOC | {"payload": PAYLOAD}).payload
    assert binding == PayloadBinding(10_000, H1, 4096, H2) and binding.as_dict() == PAYLOAD
    assert binding.chunk_sizes() == [4096, 4096, 1808]


@pytest.mark.parametrize(
    ("size", "chunk_bytes", "sizes"),
    [
        (0, 4096, [0]),
        (1, 4096, [1]),
        (4096, 4096, [4096]),
        (4097, 4096, [4096, 1]),
        (8192, 4096, [4096, 4096]),
    ],
)
def test_chunk_sizes_are_implied_by_size_and_chunk_bytes(
    size: int, chunk_bytes: int, sizes: list[int]
) -> None:
    assert PayloadBinding(size, H1, chunk_bytes, H2).chunk_sizes() == sizes


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (
            {k: v for k, v in PAYLOAD.items() if k != "chunks_sha256"},
            "'payload' must be an object with exactly",
        ),
        (PAYLOAD | {"url": "http://x"}, "'payload' must be an object with exactly"),
        ([PAYLOAD], "'payload' must be an object with exactly"),
        (PAYLOAD | {"size": -1}, "'size' must be an integer in 0.."),
        (PAYLOAD | {"chunk_bytes": 0}, "chunk_bytes must be an integer in 1..262144"),
        (PAYLOAD | {"chunk_bytes": CHUNK_BYTES_MAX + 1}, "chunk_bytes must be an integer in 1..262144"),
        (PAYLOAD | {"sha256": "x"}, "'sha256' must be a lowercase hex sha256"),
    ],
)
def test_payload_binding_errors(payload: object, detail: str) -> None:
    error = rejected(DOC | {"payload": payload})
    assert error.code == "manifest_invalid" and detail in error.detail


def test_the_chunk_table_hash_is_over_the_raw_digests_in_order() -> None:
    digests = [hashlib.sha256(bytes([n])).hexdigest() for n in range(3)]
    expected = hashlib.sha256(b"".join(bytes.fromhex(d) for d in digests)).hexdigest()
    assert chunk_table_sha256(digests) == expected
    assert chunk_table_sha256(list(reversed(digests))) != expected
    assert chunk_table_sha256([]) == hashlib.sha256(b"").hexdigest()


# --- decoding ----------------------------------------------------------------------------------------------------
def test_the_manifest_size_limit_comes_before_any_parsing() -> None:
    padded = manifest_bytes(DOC)[:-1] + b" " * (MAX_MANIFEST_BYTES - len(manifest_bytes(DOC)) + 1) + b"}"
    assert len(padded) == MAX_MANIFEST_BYTES + 1
    assert rejected(padded).code == "oversized"
    assert parse_manifest(padded[:-2] + b"}").version == 5  # at the limit: whitespace is valid JSON


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{}", b"{", b"[" * 100_000 + b"]" * 100_000, b'"manifest"', b"null", b"[]"],
    ids=["not-utf8", "truncated", "deep", "string", "null", "list"],
)
def test_bytes_that_are_not_a_json_object_are_not_json(raw: bytes) -> None:
    assert rejected(raw).code == "manifest_not_json"


@pytest.mark.parametrize(
    ("key", "value"), [("format", "edgeface-bundle/2"), ("format", None), ("dtype", "float16")]
)
def test_format_and_dtype_are_exact(key: str, value: object) -> None:
    error = rejected(DOC | {key: value})
    assert error.code == "manifest_invalid" and error.detail.startswith(f"{key} must be ")
