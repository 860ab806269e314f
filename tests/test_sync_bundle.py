"""Bundle container, manifest and payload checks, and deltas: no broker needed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from edgeface.identity.gallery import Gallery, npy_bytes
from edgeface.server.build import build_bundle
from edgeface.server.delta import compute_delta
from edgeface.server.signing import sign
from edgeface.sync.apply import DevicePolicy, check_device, materialise
from edgeface.sync.bundle import (
    MAGIC,
    Bundle,
    pack_bundle,
    pack_payload,
    split_payload,
    unpack_bundle,
    verify_bundle,
)
from edgeface.sync.delta import apply_delta
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import manifest_bytes, parse_manifest
from tests.factories import FLEET, MODEL, Keys, make_gallery, make_keys, resigned


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


def _parts(keys: Keys, gallery: Gallery | None = None, version: int = 1) -> Bundle:
    gallery = gallery or make_gallery(10)
    return unpack_bundle(build_bundle(gallery, fleet=FLEET, version=version, key=keys.private))


def _code(keys: Keys, bundle: Bundle) -> str:
    with pytest.raises(Rejected) as info:
        verify_bundle(bundle, keys.public)
    return info.value.code


def test_round_trip_keeps_rows_and_vectors_exactly(keys: Keys) -> None:
    gallery = make_gallery(10)
    data = build_bundle(gallery, fleet=FLEET, version=3, key=keys.private)
    assert data.startswith(MAGIC)
    verified = verify_bundle(unpack_bundle(data), keys.public)
    assert verified.rows.ids == gallery.ids and verified.rows.names == gallery.names
    np.testing.assert_array_equal(verified.rows.vectors, gallery.vectors)
    assert verified.manifest.version == 3 and verified.manifest.model_sha256 == MODEL


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda d: b"EFBUNDL0" + d[8:], "payload_invalid"),
        (lambda d: d[:10], "payload_invalid"),
        (lambda d: MAGIC + (2**31).to_bytes(4, "big") + d[12:], "oversized"),
        (lambda d: d[:40], "payload_invalid"),
    ],
)
def test_container_errors(keys: Keys, mangle, code: str) -> None:
    data = build_bundle(make_gallery(3), fleet=FLEET, version=1, key=keys.private)
    with pytest.raises(Rejected) as info:
        unpack_bundle(mangle(data))
    assert info.value.code == code


def test_payload_over_the_limit_is_refused_before_parsing(keys: Keys) -> None:
    data = build_bundle(make_gallery(100), fleet=FLEET, version=1, key=keys.private)
    with pytest.raises(Rejected, match="oversized"):
        unpack_bundle(data, max_payload=10_000)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"format": "edgeface-bundle/2"}, "manifest_invalid"),
        ({"version": True}, "manifest_invalid"),
        ({"version": 0}, "manifest_invalid"),
        ({"model_sha256": "xyz"}, "manifest_invalid"),
        ({"expires": "tomorrow"}, "manifest_invalid"),
        ({"created": "2026-01-01T00:00:00"}, "manifest_invalid"),  # no offset
        ({"dtype": "float64"}, "manifest_invalid"),
        ({"base_version": 1}, "manifest_invalid"),  # not below version 1
        ({"remove": ["a"]}, "manifest_invalid"),  # remove without base
        ({"count": 11}, "payload_invalid"),
        ({"dim": 64}, "payload_invalid"),
    ],
)
def test_manifest_field_errors(keys: Keys, changes: dict, code: str) -> None:
    assert _code(keys, resigned(keys, _parts(keys), changes)) == code


def test_manifest_that_is_not_an_object(keys: Keys) -> None:
    with pytest.raises(Rejected) as info:
        parse_manifest(b"[1, 2, 3]")
    assert info.value.code == "manifest_not_json"


def _with_payload(keys: Keys, identities: bytes, vectors: bytes, count: int, dim: int = 128) -> Bundle:
    from edgeface.identity.gallery import sha256_bytes

    parts = _parts(keys)
    changes = {
        "identities": sha256_bytes(identities),
        "vectors": sha256_bytes(vectors),
        "count": count,
        "dim": dim,
    }
    return resigned(keys, parts, changes, pack_payload(identities, vectors))


def test_pickled_object_vectors_are_never_loaded(keys: Keys) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    rows = json.dumps([{"id": "a", "name": "A", "samples": 1}]).encode()
    bundle = _with_payload(keys, rows, buffer.getvalue(), 1)
    assert _code(keys, bundle) == "payload_invalid"


@pytest.mark.parametrize(
    ("rows", "vectors"),
    [
        ([{"id": "a", "name": "A", "samples": 1, "extra": 1}], np.eye(1, 128, dtype=np.float32)),
        ([{"id": "a", "name": "A", "samples": -1}], np.eye(1, 128, dtype=np.float32)),
        ([{"id": "a", "name": "A", "samples": 1}] * 2, np.eye(2, 128, dtype=np.float32)),
        ([{"id": "a", "name": "A", "samples": 1}], 2 * np.eye(1, 128, dtype=np.float32)),
        ([{"id": "a", "name": "A", "samples": 1}], np.eye(1, 128, dtype=np.float64)),
        ([{"id": "a", "name": "A", "samples": 1}], np.full((1, 128), np.nan, np.float32)),
    ],
)
def test_bad_rows_or_vectors(keys: Keys, rows: list, vectors: np.ndarray) -> None:
    bundle = _with_payload(keys, json.dumps(rows).encode(), npy_bytes(vectors), len(rows))
    assert _code(keys, bundle) == "payload_invalid"


def test_delta_round_trip_with_remove_update_add(keys: Keys) -> None:
    base = make_gallery(50)
    changed = base.vectors.copy()
    changed[7] = make_gallery(1, 900).vectors[0]
    new = Gallery(base.ids, (*base.names[:3], "Renamed", *base.names[4:]), base.samples, changed, MODEL, 2)
    new = new.remove({base.ids[10], base.ids[11]}).enroll("z", "Zed", make_gallery(1, 901).vectors)
    delta = compute_delta(base, new)
    assert set(delta.remove) == {base.ids[10], base.ids[11]}
    assert set(delta.upsert.ids) == {base.ids[3], base.ids[7], "z"}
    result = apply_delta(base, delta, 2)
    assert result.ids == new.ids
    np.testing.assert_allclose(result.vectors, new.vectors, atol=1e-6)
    data = build_bundle(new, fleet=FLEET, version=2, key=keys.private, base=base)
    verified = verify_bundle(unpack_bundle(data), keys.public)
    policy = DevicePolicy(FLEET, MODEL)
    check_device(verified.manifest, policy, base)
    applied = materialise(verified.manifest, verified.rows, base).gallery
    assert applied.ids == new.ids and applied.names[3] == "Renamed" and applied.version == 2


def test_delta_with_tampered_result_is_refused(keys: Keys) -> None:
    base = make_gallery(20)
    data = build_bundle(base.remove({base.ids[0]}), fleet=FLEET, version=2, key=keys.private, base=base)
    parts = unpack_bundle(data)
    fields = json.loads(parts.manifest)
    fields["remove"] = [base.ids[1]]  # signed by the server, but result no longer matches
    raw = manifest_bytes(fields)
    verified = verify_bundle(Bundle(raw, sign(keys.private, raw), parts.payload), keys.public)
    with pytest.raises(Rejected, match="result_mismatch"):
        materialise(verified.manifest, verified.rows, base)


@pytest.mark.parametrize(
    ("running_version", "code"), [(None, "base_mismatch"), (2, "version_not_newer"), (1, None)]
)
def test_device_checks_for_delta_base(keys: Keys, running_version: int | None, code: str | None) -> None:
    base = make_gallery(5)
    data = build_bundle(base.remove({base.ids[0]}), fleet=FLEET, version=2, key=keys.private, base=base)
    manifest = verify_bundle(unpack_bundle(data), keys.public).manifest
    running = None if running_version is None else base.with_version(running_version)
    if code is None:
        assert check_device(manifest, DevicePolicy(FLEET, MODEL), running) is None
        return
    with pytest.raises(Rejected) as info:
        check_device(manifest, DevicePolicy(FLEET, MODEL), running)
    assert info.value.code == code


def test_split_payload_rejects_a_lying_length() -> None:
    with pytest.raises(Rejected, match="payload_invalid"):
        split_payload((1000).to_bytes(4, "big") + b"short")


def test_pack_bundle_needs_a_64_byte_signature() -> None:
    with pytest.raises(Rejected):
        pack_bundle(Bundle(b"{}", b"short", b""))
