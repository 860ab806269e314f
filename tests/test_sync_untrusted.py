"""Untrusted MQTT input through the rejection path (issue 22 items 3, 7, 8): huge integers and deep JSON in an
announcement, a manifest or identities; a signed bundle carrying an id or name no consumer can encode; one
device's garbage retained state during a fleet publish."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edgeface.identity.gallery import GalleryStore, sha256_bytes
from edgeface.server.build import build_bundle
from edgeface.server.publish import delta_allowed
from edgeface.sync.apply import DevicePolicy
from edgeface.sync.bundle import bind_payload, pack_payload, split_payload, unpack_bundle, verify_bundle
from edgeface.sync.chunks import ANNOUNCE_FORMAT, parse_announcement
from edgeface.sync.client import GallerySyncClient
from edgeface.sync.errors import Rejected
from edgeface.sync.manifest import parse_manifest
from edgeface.sync.rawio import parse_rows
from edgeface.sync.settings import SyncClientSettings
from edgeface.sync.validate import CHUNK_BYTES_MAX
from tests.factories import FLEET, MODEL, PREFIX, Keys, make_gallery, make_keys, resigned

HUGE = b"1" * 4400  # beyond CPython's 4300-digit int parsing limit: json.loads raises plain ValueError
DEEP = b"[" * 100_000


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


@pytest.mark.parametrize(
    ("parse", "raw", "code"),
    [
        (lambda raw: parse_announcement(raw, 1 << 20), b'{"format": "%s", "payload": {"size": ' % ANNOUNCE_FORMAT.encode() + HUGE + b"}}", "announcement_invalid"),
        (lambda raw: parse_announcement(raw, 1 << 20), DEEP, "announcement_invalid"),
        (parse_manifest, b'{"format": "edgeface-bundle/1", "version": ' + HUGE + b"}", "manifest_not_json"),
        (parse_rows, b'[{"id": "a", "name": "b", "samples": ' + HUGE + b"}]", "payload_invalid"),
    ],
)  # fmt: skip
def test_huge_integers_and_deep_json_are_rejected_not_raised(parse, raw: bytes, code: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse(raw)
    assert caught.value.code == code


def test_a_flood_of_huge_integer_announcements_is_rejected_and_rate_limited(
    tmp_path: Path, keys: Keys, caplog
) -> None:
    incidents: list[str] = []
    client = GallerySyncClient(
        SyncClientSettings(DevicePolicy(FLEET, MODEL), "door1", PREFIX),
        keys.public,
        GalleryStore(tmp_path / "gallery"),
        on_gallery=lambda gallery: None,
        on_rejected=incidents.append,
    )
    caplog.set_level(logging.INFO, logger="edgeface.sync")
    raw = b'{"format": "%s", "payload": {"size": ' % ANNOUNCE_FORMAT.encode() + HUGE + b"}}"
    try:
        for _ in range(2000):
            client.on_message(f"{PREFIX}/fleet/{FLEET}/gallery", raw)
        state = client.last_state
    finally:
        client.close()
    assert state.status == "rejected" and "not JSON" in (state.reason or "")
    assert 1 <= len(incidents) <= 50, len(incidents)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(lines) <= 50, f"{len(lines)} log lines for 2000 messages"


@pytest.mark.parametrize(
    ("field", "value"), [("name", "\ud800"), ("id", "\udfff"), ("name", "a\x00b"), ("id", "x" * 300)]
)
def test_a_signed_bundle_with_an_unencodable_id_or_name_is_refused(
    keys: Keys, field: str, value: str
) -> None:
    parts = unpack_bundle(build_bundle(make_gallery(3), fleet=FLEET, version=1, key=keys.private))
    identities, vectors = split_payload(parts.payload)
    rows = json.loads(bytes(identities))
    rows[1][field] = value
    hostile = json.dumps(rows).encode()  # ASCII escapes: "\ud800" is valid JSON text
    payload = pack_payload(hostile, bytes(vectors))
    changes = {
        "identities": sha256_bytes(hostile),
        "payload": bind_payload(payload, CHUNK_BYTES_MAX).as_dict(),
    }
    bundle = resigned(keys, parts, changes, payload)
    with pytest.raises(Rejected) as caught:
        verify_bundle(bundle, keys.public)
    assert caught.value.code == "payload_invalid" and f"identity {field}" in caught.value.reason


def test_one_devices_garbage_retained_state_is_skipped_by_a_fleet_publish(keys: Keys, caplog) -> None:
    delta = parse_manifest(
        unpack_bundle(build_bundle(make_gallery(3), fleet=FLEET, version=2, key=keys.private)).manifest
    )
    good = json.dumps({"fleet": FLEET, "running": delta.base_version}).encode()
    states = {
        f"{PREFIX}/door-a/gallery/state": good,
        f"{PREFIX}/door-b/gallery/state": b'{"fleet": "lobby", "running": ' + HUGE + b"}",
        f"{PREFIX}/door-c/gallery/state": DEEP,
    }
    caplog.set_level(logging.WARNING)
    assert delta_allowed(delta, states, FLEET) is True
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert (
        len(skipped) == 2
        and any("door-b" in line for line in skipped)
        and any("door-c" in line for line in skipped)
    )
