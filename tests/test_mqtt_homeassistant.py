"""HomeAssistant over a real publisher and a real mosquitto: retained discovery, presence on and off, entities
following the gallery, HA's birth message, stale configs cleared, and the snapshot topic silent unless enabled.

The daemon end to end (real frames, fleet delta, CLI removal) is in `test_daemon_homeassistant.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.discovery import DoorInfo
from edgeface.mqtt.homeassistant import HomeAssistant, HomeAssistantSettings
from edgeface.mqtt.payloads import StatusInfo
from edgeface.mqtt.settings import MqttSettings
from edgeface.pipeline.events import Event, recognition_event
from edgeface.types import Match
from tests.conftest import Broker
from tests.event_schema import validate
from tests.factories import Watcher, connect, make_gallery, retained, wait_for

pytestmark = pytest.mark.broker
STATUS = StatusInfo("0.1.0", 1, 3, "facerec128", "ab" * 32)
NODE = "edgeface_door1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(broker: Broker, tmp: Path, **mqtt: Any) -> MqttSettings:
    values: dict[str, Any] = {"device": "door1", "host": "127.0.0.1", "port": broker.port,
                              "spool_path": tmp / "spool.db", "reconnect_min_s": 1, "reconnect_max_s": 1}  # fmt: skip
    return MqttSettings(**(values | mqtt))


class Door:
    def __init__(
        self, broker: Broker, tmp: Path, ha: HomeAssistantSettings, people: int = 3, **mqtt: Any
    ) -> None:
        self.clock = Clock()
        self.publisher = MqttPublisher(settings(broker, tmp, **mqtt), STATUS)
        self.ha = HomeAssistant(self.publisher, ha, DoorInfo("facerec128", "0.1.0"), clock=self.clock)
        self.gallery = make_gallery(people)
        self.ha.attach(self.gallery)
        self.publisher.start()
        assert self.publisher.wait_connected(5)
        expected = 11 + people + int(ha.snapshot)  # the door's own entities, one per person, the image
        wait_for(lambda: len(configs(broker)) == expected, 20, "discovery retained")

    def close(self) -> None:
        self.publisher.close()


@pytest.fixture
def door(broker: Broker, tmp_path: Path) -> Iterator[Door]:
    instance = Door(broker, tmp_path, HomeAssistantSettings(presence_timeout_s=30), ha_discovery=True)
    try:
        yield instance
    finally:
        instance.close()


def configs(broker: Broker) -> dict[str, dict]:
    return {t: json.loads(p) for t, p in retained(broker, f"homeassistant/+/{NODE}/+/config").items()}


def person_topic(identity: str) -> str:
    return f"homeassistant/binary_sensor/{NODE}/person_{identity}/config"


def event_of(match: Match) -> Event:
    return recognition_event(device="door1", camera="cam0", track=1, match=match, frames=3,
                             bbox=(0.0, 0.0, 10.0, 10.0), gallery_version=1, model_sha256="ab" * 32,
                             latency_ms=5.0)  # fmt: skip


def test_discovery_is_retained_with_one_presence_entity_per_person(broker: Broker, door: Door) -> None:
    found = configs(broker)
    for config in found.values():
        validate("ha_discovery", config)
    people = {t for t in found if "/binary_sensor/" in t}
    assert people == {person_topic(i) for i in door.gallery.ids}
    assert f"homeassistant/event/{NODE}/visitor/config" in found
    diagnostics = [c for c in found.values() if c.get("entity_category") == "diagnostic"]
    assert len(diagnostics) == 9
    assert not [t for t in found if "/image/" in t]  # snapshots are off
    states = retained(broker, "edgeface/door1/presence/+")
    assert states == {f"edgeface/door1/presence/{i}": b"OFF" for i in door.gallery.ids}


def test_a_large_gallery_gets_every_config_retained_and_events_still_flow(
    broker: Broker, tmp_path: Path
) -> None:
    door = Door(broker, tmp_path, HomeAssistantSettings(), people=300, ha_discovery=True, max_inflight=4)
    watcher = Watcher(broker, ["edgeface/door1/events"])
    try:
        event = event_of(Match("unknown", None, 0.2, 0.1, 0.5))
        door.ha.publish_all()  # as HA's birth message would, while events are being sent
        door.publisher.publish_event(event)
        wait_for(lambda: len(watcher.on("edgeface/door1/events")) == 1, 10, "the event")
        found = configs(broker)
        assert len([t for t in found if "/binary_sensor/" in t]) == 300
        assert len(retained(broker, "edgeface/door1/presence/+")) == 300
    finally:
        watcher.close()
        door.close()


def test_presence_turns_on_when_recognised_and_off_after_the_timeout(broker: Broker, door: Door) -> None:
    watcher = Watcher(broker, ["edgeface/door1/presence/id000001"])
    try:
        wait_for(lambda: watcher.on("edgeface/door1/presence/id000001") == [b"OFF"], 5, "retained OFF")
        door.ha.recognised("id000001")
        door.ha.recognised("not-enrolled")  # nobody to turn on
        wait_for(lambda: watcher.on("edgeface/door1/presence/id000001")[-1:] == [b"ON"], 5, "ON")
        door.clock.now += 29
        door.ha.recognised("id000001")  # seen again: the timer restarts
        door.clock.now += 29
        door.ha.tick()
        assert door.ha.present() == {"id000001"}
        door.clock.now += 2
        door.ha.tick()
        wait_for(lambda: watcher.on("edgeface/door1/presence/id000001")[-1:] == [b"OFF"], 5, "OFF")
        assert watcher.on("edgeface/door1/presence/id000001") == [b"OFF", b"ON", b"OFF"]
        assert door.ha.present() == set()
    finally:
        watcher.close()


def test_entities_follow_the_gallery_removed_people_get_an_empty_retained_config(
    broker: Broker, door: Door
) -> None:
    watcher = Watcher(broker, [person_topic("id000000"), person_topic("id000002")])
    try:
        wait_for(lambda: len(watcher.on(person_topic("id000000"))) == 1, 5, "config")
        renamed = door.gallery.remove({"id000000"})
        renamed = type(renamed)(renamed.ids, ("First", "Ada L."), renamed.samples, renamed.vectors,
                                renamed.model_sha256, 2)  # fmt: skip
        door.ha.gallery_changed(renamed)
        wait_for(lambda: watcher.on(person_topic("id000000"))[-1:] == [b""], 5, "empty config")
        wait_for(lambda: len(watcher.on(person_topic("id000002"))) == 2, 5, "renamed config")
    finally:
        watcher.close()
    found = configs(broker)
    assert person_topic("id000000") not in found
    assert found[person_topic("id000002")]["name"] == "Ada L."
    assert found[person_topic("id000002")]["unique_id"] == f"{NODE}_person_id000002"
    assert "edgeface/door1/presence/id000000" not in retained(broker, "edgeface/door1/presence/+")


def test_a_retained_online_from_home_assistant_gets_discovery_again(broker: Broker, door: Door) -> None:
    visitor = f"homeassistant/event/{NODE}/visitor/config"
    watcher = Watcher(broker, [visitor])
    client = connect(broker.host, broker.port)
    try:
        wait_for(lambda: len(watcher.on(visitor)) == 1, 5, "first config")
        client.publish("homeassistant/status", b"offline", qos=1, retain=True).wait_for_publish(5)
        time.sleep(0.5)
        assert len(watcher.on(visitor)) == 1  # HA going away needs nothing
        client.publish("homeassistant/status", b"online", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: len(watcher.on(visitor)) == 2, 5, "discovery again")
        for _ in range(20):  # a flood of `online` within seconds gets one more round at most
            client.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert len(watcher.on(visitor)) == 2
        door.clock.now += 6  # a later restart of HA is answered again
        client.publish("homeassistant/status", b"online", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: len(watcher.on(visitor)) == 3, 5, "discovery after a later restart")
    finally:
        client.disconnect()
        watcher.close()


def test_a_stale_config_under_the_node_is_cleared(broker: Broker, door: Door) -> None:
    stale = person_topic("ghost")
    client = connect(broker.host, broker.port)
    try:
        client.publish("edgeface/door1/presence/ghost", b"ON", qos=1, retain=True).wait_for_publish(5)
        client.publish(stale, json.dumps({"name": "Ghost"}), qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: stale not in configs(broker), 10, "stale config cleared")
        assert "edgeface/door1/presence/ghost" not in retained(broker, "edgeface/door1/presence/+")
    finally:
        client.disconnect()
    assert person_topic("id000000") in configs(broker)


def crop() -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), (5, 5), 0)


def test_the_snapshot_topic_stays_silent_unless_enabled(broker: Broker, door: Door) -> None:
    watcher = Watcher(broker, ["edgeface/door1/snapshot"])
    try:
        for _ in range(3):
            assert not door.ha.event_published(event_of(Match("unknown", None, 0.2, 0.1, 0.5)), crop())
            door.clock.now += 60
        time.sleep(1.0)
        assert watcher.on("edgeface/door1/snapshot") == []
    finally:
        watcher.close()


def test_an_enabled_snapshot_is_a_small_jpeg_of_the_crop_rate_limited(broker: Broker, tmp_path: Path) -> None:
    ha = HomeAssistantSettings(snapshot=True, snapshot_px=64, snapshot_max_bytes=8000, snapshot_interval_s=10)
    door = Door(broker, tmp_path, ha, ha_discovery=True)
    watcher = Watcher(broker, ["edgeface/door1/snapshot"])
    try:
        assert f"homeassistant/image/{NODE}/face/config" in configs(broker)
        unknown = event_of(Match("unknown", None, 0.2, 0.1, 0.5))
        sent = []
        for _ in range(4):  # every 4 s: only every third one passes the 10 s gate
            sent.append(door.ha.event_published(unknown, crop()))
            door.clock.now += 4
        assert sent == [True, False, False, True]
        wait_for(lambda: len(watcher.on("edgeface/door1/snapshot")) == 2, 5, "two snapshots")
        for data in watcher.on("edgeface/door1/snapshot"):
            assert data[:2] == b"\xff\xd8" and len(data) <= 8000
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (64, 64, 3)
    finally:
        watcher.close()
        door.close()
    assert not retained(broker, "edgeface/door1/snapshot")  # never retained
