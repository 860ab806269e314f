"""Issue 22 item 5: a bundle of more MQTT chunks than a default mosquitto queues per client (1,000 queued +
20 in flight) could never be fetched. Now: up to MAX_MQTT_CHUNKS chunks are fetched from a real mosquitto
at its default queue limits; publishing more is refused with a one-line message naming --url-base, and a
device refuses such an announcement with a reason instead of losing its tail on every retry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.server.build import build_bundle
from edgeface.server.publish import publish
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.chunks import MAX_MQTT_CHUNKS, announcement_bytes, split_chunks
from edgeface.sync.mqtt import BrokerOptions
from tests.factories import FLEET, PREFIX, make_gallery, make_keys, raw_publish, start_device, wait_for

pytestmark = pytest.mark.broker

GALLERY = make_gallery(1000)


def _chunk_bytes_for(chunks: int, keys) -> int:
    size = len(unpack_bundle(build_bundle(GALLERY, fleet=FLEET, version=1, key=keys.private)).payload)
    return math.ceil(size / chunks)


def test_a_bundle_at_the_chunk_limit_is_applied_at_default_queue_limits(broker, tmp_path: Path) -> None:
    assert "max_queued" not in broker.config.read_text()  # mosquitto's defaults
    keys = make_keys(tmp_path / "keys")
    chunk_bytes = _chunk_bytes_for(MAX_MQTT_CHUNKS, keys)
    bundle = build_bundle(GALLERY, fleet=FLEET, version=1, key=keys.private, chunk_bytes=chunk_bytes)
    device = start_device(broker, tmp_path, keys)
    try:
        done = publish(BrokerOptions(broker.host, broker.port), PREFIX, FLEET, bundle, None, wait_s=0.2)
        assert MAX_MQTT_CHUNKS - 10 <= done.chunks <= MAX_MQTT_CHUNKS
        wait_for(lambda: device.sync.running_version == 1, 30, f"{done.chunks} chunks applied")
        assert device.store.load().ids == GALLERY.ids
    finally:
        device.close()


def test_more_chunks_are_refused_at_publish_naming_url_base_and_by_the_device(
    broker, tmp_path: Path, capsys
) -> None:
    keys = make_keys(tmp_path / "keys")
    chunk_bytes = _chunk_bytes_for(MAX_MQTT_CHUNKS + 100, keys)
    data = build_bundle(GALLERY, fleet=FLEET, version=1, key=keys.private, chunk_bytes=chunk_bytes)
    (tmp_path / "big.bundle").write_bytes(data)
    code = main(["gallery", "publish", "--broker", f"127.0.0.1:{broker.port}", "--fleet", FLEET,
                 "--state-wait", "0.1", str(tmp_path / "big.bundle")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--url-base" in err[0] and "Traceback" not in err[0]
    device = start_device(broker, tmp_path, keys)
    try:  # a hostile or old publisher sends it anyway: refused up front with the reason
        parts = unpack_bundle(data)
        chunks = split_chunks(parts.payload, chunk_bytes)
        announcement = announcement_bytes(parts.manifest, parts.signature, parts.payload, chunks)
        raw_publish(broker, 1, announcement, {})
        wait_for(lambda: "publish by URL" in (device.sync.last_state.reason or ""), 5, "refusal")
        assert device.sync.running_version == 0
    finally:
        device.close()
