"""Gallery sync over a real mosquitto: publish -> apply, revocation, deltas, chunk clean-up, state."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import BundleError
from edgeface.identity.gallery import GalleryStore
from edgeface.server.build import build_bundle
from edgeface.server.publish import publish
from edgeface.sync.apply import DevicePolicy
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.chunks import announcement_bytes, split_chunks
from edgeface.sync.client import GallerySyncClient
from edgeface.sync.mqtt import BrokerOptions
from edgeface.sync.settings import SyncClientSettings
from tests.factories import (
    FLEET,
    MODEL,
    PREFIX,
    Keys,
    connect,
    make_gallery,
    make_keys,
    raw_publish,
    read_retained,
    start_device,
    wait_for,
)

pytestmark = pytest.mark.broker


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def _publish(broker, data: bytes, fallback: bytes | None = None, wait_s: float = 0.3):
    return publish(BrokerOptions(broker.host, broker.port), PREFIX, FLEET, data, fallback, wait_s=wait_s)


def _best_id(device, vector: np.ndarray) -> str:
    hit = device.index.search(vector[None], k=1)[0][0]
    return device.index.gallery.ids[hit.index]


def test_published_bundle_is_applied(broker, tmp_path: Path, keys: Keys) -> None:
    # How fast a bundle is applied is measured by bench/sync.py; the timeout here only stops a hung test.
    device = start_device(broker, tmp_path, keys)
    try:
        gallery = make_gallery(50)
        _publish(broker, build_bundle(gallery, fleet=FLEET, version=1, key=keys.private))
        wait_for(lambda: device.sync.running_version == 1, 30, "version 1 applied")
        assert len(device.index.gallery) == 50 and device.index.gallery.version == 1
        assert device.store.load().ids == gallery.ids
        np.testing.assert_array_equal(device.store.load().vectors, gallery.vectors)
        assert _best_id(device, gallery.vectors[7]) == gallery.ids[7]
        state = read_retained(broker, f"{PREFIX}/door1/gallery/state")
        assert state["status"] == "applied" and state["version"] == 1 and state["running"] == 1
    finally:
        device.close()


def test_revoked_identity_disappears_and_added_one_matches(broker, tmp_path: Path, keys: Keys) -> None:
    devices = [start_device(broker, tmp_path, keys, name=f"door{i}") for i in (1, 2)]
    try:
        v1 = make_gallery(20)
        _publish(broker, build_bundle(v1, fleet=FLEET, version=1, key=keys.private))
        for device in devices:
            wait_for(lambda d=device: d.sync.running_version == 1, 5, "v1")
        removed, added = v1.ids[3], make_gallery(1, start=1000)
        v2 = v1.remove({removed})
        v2 = type(v2)(
            v2.ids + added.ids,
            v2.names + added.names,
            v2.samples + added.samples,
            np.vstack([v2.vectors, added.vectors]),
            v2.model_sha256,
            2,
        )
        _publish(broker, build_bundle(v2, fleet=FLEET, version=2, key=keys.private))
        for device in devices:  # the timeout only stops a hung test; bench/sync.py measures apply time
            wait_for(lambda d=device: d.index.gallery.version == 2, 30, "v2 live")
            assert removed not in device.index.gallery.ids
            assert removed not in device.store.load().ids
            assert _best_id(device, v1.vectors[3]) != removed
            assert _best_id(device, added.vectors[0]) == added.ids[0]
    finally:
        for device in devices:
            device.close()


def test_old_version_chunks_are_cleared_after_publishing(broker, tmp_path: Path, keys: Keys) -> None:
    gallery = make_gallery(1000)  # 512 KB of vectors: three 256 KiB chunks
    _publish(broker, build_bundle(gallery, fleet=FLEET, version=1, key=keys.private))
    done = _publish(
        broker, build_bundle(gallery.remove({gallery.ids[0]}), fleet=FLEET, version=2, key=keys.private)
    )
    assert done.cleared >= 1
    seen: list[str] = []
    client = connect(broker.host, broker.port)
    client.on_message = lambda c, u, m: seen.append(m.topic)
    client.subscribe(f"{PREFIX}/fleet/{FLEET}/gallery/#", qos=1)
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    assert seen and all("/gallery/1/" not in t for t in seen)
    assert any("/gallery/2/" in t for t in seen)


def test_restarted_device_starts_from_its_stored_gallery(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys)
    _publish(broker, build_bundle(make_gallery(10), fleet=FLEET, version=1, key=keys.private))
    wait_for(lambda: device.sync.running_version == 1, 5, "v1")
    device.close()
    broker.stop()  # offline: the device must still come up with version 1
    store = GalleryStore(tmp_path / "door1")
    offline = GallerySyncClient(
        SyncClientSettings(DevicePolicy(FLEET, MODEL), "door1", PREFIX), keys.public, store, lambda g: None
    )
    try:
        assert offline.gallery is not None and offline.gallery.version == 1 and len(offline.gallery) == 10
        assert offline.running_version == 1 and offline.matching_allowed() and not offline.expired
    finally:
        offline.close()
    other_model = GallerySyncClient(
        SyncClientSettings(DevicePolicy(FLEET, "cd" * 32), "door1"), keys.public, store, lambda g: None
    )
    try:  # a gallery made for another embedder is never used
        assert other_model.gallery is None and other_model.running_version == 0
    finally:
        other_model.close()


def test_delta_is_applied_on_its_base(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys)
    try:
        v1 = make_gallery(200)
        _publish(broker, build_bundle(v1, fleet=FLEET, version=1, key=keys.private))
        wait_for(lambda: device.sync.running_version == 1, 5, "v1")
        # The server chooses a delta from the devices' retained state: let the broker hold the v1 state first.
        topic = device.sync.config.state_topic
        wait_for(lambda: (read_retained(broker, topic) or {}).get("running") == 1, 5, "retained state v1")
        v2 = v1.remove({v1.ids[0], v1.ids[1]}).enroll("newcomer", "New Comer", make_gallery(1, 500).vectors)
        delta = build_bundle(v2, fleet=FLEET, version=2, key=keys.private, base=v1)
        full = build_bundle(v2, fleet=FLEET, version=2, key=keys.private)
        assert len(delta) < len(full) / 10
        done = _publish(broker, delta, fallback=full)
        assert done.delta
        wait_for(lambda: device.sync.running_version == 2, 5, "delta applied")
        applied = device.store.load()
        assert set(applied.ids) == set(v2.ids) and len(device.index.gallery) == len(v2)
        assert _best_id(device, v2.vectors[v2.ids.index("newcomer")]) == "newcomer"
    finally:
        device.close()


def test_delta_on_wrong_base_is_rejected_and_publisher_falls_back(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys)
    try:
        v1 = make_gallery(30)
        _publish(broker, build_bundle(v1, fleet=FLEET, version=1, key=keys.private))
        wait_for(lambda: device.sync.running_version == 1, 5, "v1")
        v2 = v1.remove({v1.ids[0]}).with_version(2)
        v3 = v2.remove({v2.ids[0]}).with_version(3)
        delta_from_2 = build_bundle(v3, fleet=FLEET, version=3, key=keys.private, base=v2)
        with pytest.raises(BundleError, match="not every device"):
            _publish(broker, delta_from_2)  # the publisher knows door1 runs 1, not 2
        parts = unpack_bundle(delta_from_2)  # force it out anyway: the device must refuse it
        chunks = split_chunks(parts.payload)
        raw_publish(
            broker,
            3,
            announcement_bytes(parts.manifest, parts.signature, parts.payload, chunks),
            dict(enumerate(chunks)),
        )
        wait_for(lambda: device.sync.last_state.status == "rejected", 5, "rejection")
        assert device.sync.last_state.reason.startswith("base_mismatch")
        assert device.sync.running_version == 1 and device.store.load().version == 1
        full = build_bundle(v3, fleet=FLEET, version=3, key=keys.private)
        assert not _publish(broker, delta_from_2, fallback=full).delta
        wait_for(lambda: device.sync.running_version == 3, 5, "full fallback applied")
        assert set(device.index.gallery.ids) == set(v3.ids)
    finally:
        device.close()
