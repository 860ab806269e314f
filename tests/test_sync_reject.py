"""Every rejection of docs/design.md §4 over a real mosquitto: reason in retained `gallery/state`, old gallery
kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edgeface.identity.gallery import Gallery
from edgeface.server.build import build_bundle as _build_bundle
from edgeface.server.signing import sign
from edgeface.sync.bundle import Bundle, pack_payload, split_payload, unpack_bundle
from edgeface.sync.chunks import announcement_bytes, split_chunks
from tests.factories import (
    FLEET,
    PREFIX,
    Device,
    Keys,
    make_gallery,
    make_keys,
    raw_publish,
    read_retained,
    resigned,
    start_device,
    wait_for,
)

pytestmark = pytest.mark.broker
CHUNK = 4096  # small chunks so a 40-identity payload spans several


def build_bundle(gallery: Gallery, **kwargs: object) -> bytes:
    """Bundles signed for CHUNK-byte chunks (the manifest signs the chunk table `_send` publishes)."""
    return _build_bundle(gallery, chunk_bytes=CHUNK, **kwargs)  # type: ignore[arg-type]


def _send(
    broker, parts: Bundle, version: int, mangle_chunks: Callable[[dict[int, bytes]], None] | None = None
) -> None:
    chunks = split_chunks(parts.payload, CHUNK)
    announcement = announcement_bytes(parts.manifest, parts.signature, parts.payload, chunks)
    sent = dict(enumerate(chunks))
    if mangle_chunks is not None:
        mangle_chunks(sent)
    raw_publish(broker, version, announcement, sent)


def _flip(data: bytes | memoryview, at: int) -> bytes:
    data = bytes(data)
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def _v2(keys: Keys, **kwargs: object) -> Bundle:
    gallery = make_gallery(40, start=100, version=2)
    return unpack_bundle(build_bundle(gallery, fleet=FLEET, version=2, key=keys.private, **kwargs))  # type: ignore[arg-type]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def _start_v1(broker, tmp_path: Path, keys: Keys, expiry: str) -> tuple[Device, Gallery]:
    """A device that applied version 1 (40 identities) from a real publish."""
    device = start_device(
        broker, tmp_path, keys, expiry_policy=expiry, fetch_timeout_s=1.0, max_payload=200_000
    )
    v1 = make_gallery(40)
    _send(broker, unpack_bundle(build_bundle(v1, fleet=FLEET, version=1, key=keys.private)), 1)
    wait_for(lambda: device.sync.running_version == 1, 5, "v1 applied")
    return device, v1


@pytest.fixture
def running(broker, tmp_path: Path, keys: Keys):
    device, v1 = _start_v1(broker, tmp_path, keys, "deny")
    yield device, v1
    device.close()


@pytest.fixture
def running_warn(broker, tmp_path: Path, keys: Keys):
    device, v1 = _start_v1(broker, tmp_path, keys, "warn")
    yield device, v1
    device.close()


def _bad_signature(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    parts = _v2(keys)
    return Bundle(parts.manifest, _flip(parts.signature, 5), parts.payload), 2


def _wrong_key(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    other = make_keys(tmp / "other", "attacker")
    return unpack_bundle(build_bundle(make_gallery(40, 100), fleet=FLEET, version=2, key=other.private)), 2


def _flipped_vectors(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    parts = _v2(keys)
    identities, vectors = split_payload(parts.payload)
    return Bundle(
        parts.manifest, parts.signature, pack_payload(identities, _flip(vectors, len(vectors) - 9))
    ), 2


def _flipped_identities(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    parts = _v2(keys)
    identities, vectors = split_payload(parts.payload)
    return Bundle(parts.manifest, parts.signature, pack_payload(_flip(identities, 30), vectors)), 2


def _rollback(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    return resigned(keys, _v2(keys), {"version": 0 + 1, "created": "2020-01-01T00:00:00Z"}), 1


def _wrong_model(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    gallery = make_gallery(40, start=100, version=2)
    other = Gallery(gallery.ids, gallery.names, gallery.samples, gallery.vectors, "cd" * 32, 2)
    return unpack_bundle(build_bundle(other, fleet=FLEET, version=2, key=keys.private)), 2


def _expired(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    then = datetime.now(UTC) - timedelta(days=2)
    return unpack_bundle(
        build_bundle(
            make_gallery(40, 100), fleet=FLEET, version=2, key=keys.private, expires_days=1, now=then
        )
    ), 2


def _not_json(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    raw = b"{'format': 'edgeface-bundle/1', version: 2"
    return Bundle(raw, sign(keys.private, raw), _v2(keys).payload), 2


def _oversized(keys: Keys, tmp: Path) -> tuple[Bundle, int]:
    big = make_gallery(500, start=100, version=2)  # 256 KB of vectors > the device's 200 KB limit
    return unpack_bundle(build_bundle(big, fleet=FLEET, version=2, key=keys.private)), 2


CASES = {
    "bad_signature": (_bad_signature, "bad_signature"),
    "wrong_key": (_wrong_key, "bad_signature"),
    "flipped_vectors": (_flipped_vectors, "vectors_sha256"),
    "flipped_identities": (_flipped_identities, "identities_sha256"),
    "rollback": (_rollback, "version_not_newer"),
    "wrong_model": (_wrong_model, "model_mismatch"),
    "expired_deny": (_expired, "expired"),
    "not_json": (_not_json, "manifest_not_json"),
    "oversized": (_oversized, "oversized"),
}


def _assert_kept(device: Device, v1: Gallery, broker, code: str) -> None:
    wait_for(lambda: device.sync.last_state.status == "rejected", 5, f"{code} rejection")
    state = read_retained(broker, f"{PREFIX}/{device.name}/gallery/state")
    assert state["status"] == "rejected" and state["reason"].startswith(code + ":"), state
    assert state["running"] == 1
    assert device.sync.running_version == 1
    kept = device.store.load()
    assert kept.version == 1 and kept.ids == v1.ids
    np.testing.assert_array_equal(kept.vectors, v1.vectors)
    assert device.index.gallery.version == 1 and len(device.index.gallery) == 40


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_bundle_is_rejected_and_old_gallery_kept(
    case: str, broker, running, keys: Keys, tmp_path: Path
) -> None:
    device, v1 = running
    make, code = CASES[case]
    parts, version = make(keys, tmp_path)
    _send(broker, parts, version)
    _assert_kept(device, v1, broker, code)


def test_same_version_with_other_content_is_a_replay(broker, running, keys: Keys) -> None:
    device, v1 = running
    _send(
        broker, unpack_bundle(build_bundle(make_gallery(40, 7), fleet=FLEET, version=1, key=keys.private)), 1
    )
    _assert_kept(device, v1, broker, "version_not_newer")


@pytest.mark.parametrize(
    ("code", "mangle"),
    [
        ("chunk_missing", lambda chunks: chunks.pop(2)),
        ("chunk_truncated", lambda chunks: chunks.__setitem__(1, chunks[1][:-100])),
        ("oversized", lambda chunks: chunks.__setitem__(1, chunks[1] + b"x" * 100)),
        ("chunk_sha256", lambda chunks: chunks.__setitem__(0, _flip(chunks[0], 50))),
    ],
)
def test_bad_chunks_are_rejected(code: str, mangle, broker, running, keys: Keys) -> None:
    device, v1 = running
    _send(broker, _v2(keys), 2, mangle)
    _assert_kept(device, v1, broker, code)


def test_expired_bundle_under_warn_is_applied_with_a_warning(broker, running_warn, keys: Keys) -> None:
    device, _ = running_warn
    then = datetime.now(UTC) - timedelta(days=2)
    gallery = make_gallery(40, 100)
    _send(
        broker,
        unpack_bundle(
            build_bundle(gallery, fleet=FLEET, version=2, key=keys.private, expires_days=1, now=then)
        ),
        2,
    )
    wait_for(lambda: device.sync.running_version == 2, 5, "expired bundle applied under warn")
    state = read_retained(broker, f"{PREFIX}/{device.name}/gallery/state")
    assert state["status"] == "applied" and "expired" in state["reason"] and state["expired"] is True
    assert device.sync.expired and device.sync.matching_allowed()


def test_gallery_expiring_under_deny_stops_matching(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys, expiry_policy="deny")
    try:
        gallery = make_gallery(5)
        bundle = build_bundle(gallery, fleet=FLEET, version=1, key=keys.private, expires_days=2 / 86400)
        _send(broker, unpack_bundle(bundle), 1)
        wait_for(lambda: device.sync.running_version == 1, 5, "short-lived bundle applied")
        assert device.sync.matching_allowed()
        wait_for(lambda: not device.sync.matching_allowed(), 5, "expiry under deny")
        assert device.sync.expired
        time.sleep(0.1)
        assert device.store.load().version == 1  # still kept, just not announced
    finally:
        device.close()
