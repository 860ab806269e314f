"""Freshness: a short-lived signed timestamp (`gallery timestamp`) on a real mosquitto; when it expires the
door reports its gallery stale with the age, and under `deny` stops matching; forged and replayed older
timestamps are refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.mqtt.topics import fleet_timestamp
from edgeface.server.build import build_bundle
from edgeface.server.publish import publish
from edgeface.server.timestamp import sign_timestamp
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.mqtt import BrokerOptions
from edgeface.sync.timestamp import timestamp_message_bytes
from tests.factories import (
    FLEET,
    PREFIX,
    Keys,
    connect,
    make_gallery,
    make_keys,
    read_retained,
    start_device,
    wait_for,
)

pytestmark = pytest.mark.broker


def _timestamp_cli(broker, keys: Keys, minutes: float) -> None:
    assert main(["gallery", "timestamp", "--broker", f"127.0.0.1:{broker.port}", "--fleet", FLEET,
                 "--key", str(keys.private_path), "--minutes", str(minutes), "--state-wait", "0.2"]) == 0  # fmt: skip


def _retain(broker, payload: bytes) -> None:
    client = connect(broker.host, broker.port)
    client.publish(fleet_timestamp(PREFIX, FLEET), payload, qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def _freshness(device) -> dict:
    return device.sync.last_state.freshness


@pytest.mark.parametrize("policy", ["deny", "warn"])
def test_a_stale_timestamp_is_reported_and_under_deny_refused(broker, tmp_path: Path, policy: str) -> None:
    keys = make_keys(tmp_path / "keys")
    bundle = build_bundle(make_gallery(10), fleet=FLEET, version=1, key=keys.private)
    publish(BrokerOptions(broker.host, broker.port), PREFIX, FLEET, bundle, None, wait_s=0.2)
    device = start_device(broker, tmp_path, keys, expiry_policy=policy)
    try:
        wait_for(lambda: device.sync.running_version == 1, 5, "v1")
        assert _freshness(device)["stale"] is False and _freshness(device)["age_s"] is None  # none seen yet
        _timestamp_cli(broker, keys, minutes=0.04)  # 2.4 s
        wait_for(lambda: _freshness(device)["version"] == 1, 5, "timestamp received")
        assert _freshness(device)["stale"] is False and device.sync.matching_allowed()
        wait_for(lambda: _freshness(device)["stale"], 8, "stale after expiry")
        assert _freshness(device)["age_s"] >= 2.4
        assert device.sync.matching_allowed() is (policy == "warn")
        state = read_retained(broker, f"{PREFIX}/door1/gallery/state")
        assert state is not None and state["freshness"]["stale"] is True
        _timestamp_cli(broker, keys, minutes=5)  # the server is back: current again
        wait_for(lambda: not _freshness(device)["stale"], 5, "fresh again")
        assert device.sync.matching_allowed()
    finally:
        device.close()


def test_required_timestamps_make_a_door_stale_until_one_arrives_and_forged_or_older_ones_are_refused(
    broker, tmp_path: Path
) -> None:
    keys, other = make_keys(tmp_path / "keys"), make_keys(tmp_path / "other", "other")
    bundle = build_bundle(make_gallery(10), fleet=FLEET, version=1, key=keys.private)
    publish(BrokerOptions(broker.host, broker.port), PREFIX, FLEET, bundle, None, wait_s=0.2)
    device = start_device(broker, tmp_path, keys, expiry_policy="deny", timestamp_required=True)
    try:
        wait_for(lambda: device.sync.running_version == 1, 5, "v1")
        assert _freshness(device)["stale"] is True and not device.sync.matching_allowed()
        manifest = unpack_bundle(bundle).manifest
        forged = sign_timestamp(manifest, other.private, timedelta(minutes=5))
        _retain(broker, timestamp_message_bytes(forged[0], forged[1]))
        time.sleep(0.5)
        assert _freshness(device)["stale"] is True  # another key's timestamp proves nothing
        now = datetime.now(UTC)
        newer = sign_timestamp(manifest, keys.private, timedelta(minutes=5), now)
        _retain(broker, timestamp_message_bytes(newer[0], newer[1]))
        wait_for(lambda: not _freshness(device)["stale"], 5, "fresh")
        older = sign_timestamp(manifest, keys.private, timedelta(seconds=1), now - timedelta(minutes=1))
        _retain(broker, timestamp_message_bytes(older[0], older[1]))  # a replayed older record
        time.sleep(2.5)
        assert _freshness(device)["stale"] is False and device.sync.freshness.expires == newer[2].expires
    finally:
        device.close()
