"""A timed-out fetch is retried while connected (item 12): the device re-subscribes to the chunk topics with
exponential back-off, so chunks that come late, or a chunk lost on the way, are still fetched. Real mosquitto."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from edgeface.mqtt.payloads import GalleryState
from edgeface.server.build import build_bundle
from edgeface.sync.apply import DevicePolicy
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.chunks import announcement_bytes, split_chunks
from edgeface.sync.settings import SyncClientSettings
from tests.factories import (
    FLEET,
    MODEL,
    Keys,
    make_gallery,
    make_keys,
    raw_publish,
    start_device,
    wait_for,
)

pytestmark = pytest.mark.broker
CHUNK = 4096


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def _bundle(keys: Keys, version: int = 1) -> tuple[bytes, dict[int, bytes]]:
    gallery = make_gallery(40, version=version)
    parts = unpack_bundle(
        build_bundle(gallery, fleet=FLEET, version=version, key=keys.private, chunk_bytes=CHUNK)
    )
    chunks = split_chunks(parts.payload, CHUNK)
    return announcement_bytes(parts.manifest, parts.signature, parts.payload, chunks), dict(enumerate(chunks))


def test_chunks_arriving_after_the_timeout_are_still_fetched(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys, fetch_timeout_s=0.3)
    try:
        announcement, chunks = _bundle(keys)
        raw_publish(broker, 1, announcement, {})
        wait_for(lambda: (device.sync.last_state.reason or "").startswith("chunk_missing"), 5, "timeout")
        assert "retry 1/" in device.sync.last_state.reason
        time.sleep(0.5)
        raw_publish(broker, 1, None, chunks)  # retained now, long after the announcement
        wait_for(lambda: device.sync.running_version == 1, 5, "late chunks applied while connected")
        assert device.sync.last_state.status == "applied"
    finally:
        device.close()


def test_a_chunk_lost_on_the_way_is_fetched_again(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys, fetch_timeout_s=0.3)
    deliver = device.sync.on_message
    dropped: list[str] = []

    def lossy(topic: str, payload: bytes) -> None:  # the link loses the first copy of chunk 2
        if topic.endswith("/1/2") and not dropped:
            dropped.append(topic)
            return
        deliver(topic, payload)

    device.sync.on_message = lossy  # type: ignore[method-assign]
    try:
        announcement, chunks = _bundle(keys)
        raw_publish(broker, 1, announcement, chunks)
        wait_for(lambda: device.sync.running_version == 1, 5, "lost chunk re-fetched after re-subscribing")
        assert dropped
    finally:
        device.close()


def test_retries_are_bounded_and_back_off(broker, tmp_path: Path, keys: Keys) -> None:
    device = start_device(broker, tmp_path, keys, fetch_timeout_s=0.2, fetch_retries=2)
    reasons: list[tuple[float, str]] = []
    original = device.sync._set_state

    def record(state: GalleryState) -> None:
        reasons.append((time.monotonic(), state.reason or ""))
        original(state)

    device.sync._set_state = record  # type: ignore[method-assign]
    try:
        announcement, _ = _bundle(keys)
        started = time.monotonic()
        raw_publish(broker, 1, announcement, {})
        wait_for(lambda: any("giving up" in r for _, r in reasons), 5, "final chunk_missing")
        time.sleep(0.5)
        missing = [(t - started, r) for t, r in reasons if r.startswith("chunk_missing")]
        assert len(missing) == 3, missing  # first timeout, retry 1/2, retry 2/2 -> give up
        assert "retry 1/2" in missing[0][1] and "retry 2/2" in missing[1][1] and "giving up" in missing[2][1]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(missing)]
        assert gaps[0] >= 0.35 and gaps[1] >= 0.75, gaps  # 0.2 s, then 0.4 s, then 0.8 s
    finally:
        device.close()


def test_retry_delays_double_up_to_the_cap() -> None:
    config = SyncClientSettings(
        DevicePolicy(FLEET, MODEL), "door1", fetch_timeout_s=30, fetch_backoff_max_s=300
    )
    assert [config.retry_delay(n) for n in range(1, 6)] == [60, 120, 240, 300, 300]
    assert config.retry_delay(10_000) == 300
    with pytest.raises(ValueError):
        SyncClientSettings(DevicePolicy(FLEET, MODEL), "door1", fetch_timeout_s=0)
