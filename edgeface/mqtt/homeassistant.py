"""Home Assistant at run time: discovery as the gallery changes, per-person presence, the opt-in face snapshot.

`HomeAssistant.attach(gallery)` (before the publisher starts) publishes every entity on each (re)connect and
again whenever Home Assistant announces itself ``online``; it also watches the retained configs under the
door's own discovery node and clears any that is no longer one of its entities (a person removed while the
door was off, the image entity after snapshots were switched off). `gallery_changed(gallery)` is the one call
a new live gallery needs. Thread-safe: the main loop, the sync worker and paho's network thread all call in;
messages are handed to paho outside the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeface.mqtt import payloads
from edgeface.mqtt.discovery import OFF, ON, Discovery, DoorInfo, Entity, ha_key
from edgeface.mqtt.ha_settings import HomeAssistantSettings
from edgeface.mqtt.snapshot import RateGate, encode_snapshot
from edgeface.mqtt.topics import ha_birth, ha_discovery_config, ha_node_configs, parse_ha_entity_config
from edgeface.types import Identity

if TYPE_CHECKING:
    import numpy as np

    from edgeface.identity.gallery import Gallery
    from edgeface.mqtt.client import MqttPublisher
    from edgeface.pipeline.events import Event

log = logging.getLogger(__name__)

BIRTH_MIN_INTERVAL_S = 5.0  # HA restarts take longer; repeats within this are ignored


def people_of(gallery: Gallery) -> dict[str, Identity]:
    """The gallery's people by their topic-safe key."""
    return {ha_key(i): Identity(i, n) for i, n in zip(gallery.ids, gallery.names, strict=True)}


class HomeAssistant:
    def __init__(
        self,
        publisher: MqttPublisher,
        settings: HomeAssistantSettings,
        info: DoorInfo,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.settings = settings
        self.enabled = publisher.settings.ha_discovery
        self.discovery = Discovery(publisher.topics, info, publisher.settings.ha_discovery_prefix)
        self._clock = clock
        self._people: dict[str, Identity] = {}
        self._on_until: dict[str, float] = {}  # key -> monotonic time presence turns off
        self._lock = threading.Lock()
        self._gate = RateGate(settings.snapshot_interval_s)
        self.snapshots_sent = 0
        self._last_birth: float | None = None

    def attach(self, gallery: Gallery) -> None:
        """Call before the publisher starts, so the first connect already publishes discovery."""
        self._people = people_of(gallery)
        if not self.enabled:
            return
        prefix = self.discovery.prefix
        self.publisher.add_connect_hook(self.publish_all)
        self.publisher.subscribe(ha_birth(prefix), self._on_birth)
        self.publisher.subscribe(ha_node_configs(prefix, self.discovery.node), self._on_config)

    # discovery ----------------------------------------------------------------------------------------
    def _entities(self) -> list[Entity]:
        return self.discovery.entities(self._people.values(), self.settings.snapshot)

    def publish_all(self) -> None:
        """Every config (retained) and every person's presence (retained)."""
        with self._lock:
            entities = self._entities()
            states = {key: ON if key in self._on_until else OFF for key in self._people}
        legacy = ha_discovery_config(self.discovery.prefix, f"{self.publisher.topics.device}_last_person")
        self._send(legacy, b"")  # the single sensor of earlier versions, now under the node
        for entity in entities:
            self._send(self.discovery.topic(entity), payloads.encode(entity.config))
        for key, state in states.items():
            self._send(self.publisher.topics.presence(key), state.encode())

    def gallery_changed(self, gallery: Gallery) -> None:
        """A new gallery is live: add (or rename) its people's entities, remove those no longer in it."""
        people = people_of(gallery)
        with self._lock:
            old, self._people = self._people, people
            removed = {key: who for key, who in old.items() if key not in people}
            for key in removed:
                self._on_until.pop(key, None)
            changed = {key: who for key, who in people.items() if old.get(key) != who}
        if not self.enabled:
            return
        for key, who in removed.items():
            self._send(self.discovery.topic(self.discovery.presence(who)), b"")
            self._send(self.publisher.topics.presence(key), b"")
        for key, who in changed.items():
            self._send(self.discovery.topic(self.discovery.presence(who)), payloads.encode(
                self.discovery.presence(who).config))  # fmt: skip
            if key not in old:
                self._send(self.publisher.topics.presence(key), OFF.encode())
        if removed or changed:
            log.info("Home Assistant: %d people added or renamed, %d removed", len(changed), len(removed))

    def _on_birth(self, topic: str, payload: bytes) -> None:
        if payload.strip() != b"online":
            return
        now = self._clock()
        if self._last_birth is not None and now - self._last_birth < BIRTH_MIN_INTERVAL_S:
            log.debug("Home Assistant online again within %g s: discovery not repeated", BIRTH_MIN_INTERVAL_S)
            return  # a flood of `online` (a broken or hostile client) does not make the door flood the broker
        self._last_birth = now
        log.info("Home Assistant is online: publishing discovery again")
        self.publish_all()

    def _on_config(self, topic: str, payload: bytes) -> None:
        """A retained config under our node that is not one of our entities now is cleared."""
        where = parse_ha_entity_config(self.discovery.prefix, self.discovery.node, topic)
        if where is None or not payload:
            return
        with self._lock:
            current = {(e.component, e.object_id) for e in self._entities()}
        if where not in current:
            log.info("Home Assistant: clearing stale entity %s/%s", *where)
            self._send(topic, b"")
            component, object_id = where
            if component == "binary_sensor" and object_id.startswith("person_"):
                self._send(self.publisher.topics.presence(object_id.removeprefix("person_")), b"")

    # presence -----------------------------------------------------------------------------------------
    def recognised(self, identity_id: str) -> None:
        """The door recognised this person (announced or not): presence on, its timer restarted."""
        key = ha_key(identity_id)
        with self._lock:
            if key not in self._people:
                return
            was_on = key in self._on_until
            self._on_until[key] = self._clock() + self.settings.presence_timeout_s
        if self.enabled and not was_on:
            self._send(self.publisher.topics.presence(key), ON.encode())

    def tick(self) -> None:
        """Turn off the presence of everyone not recognised within the timeout."""
        now = self._clock()
        with self._lock:
            expired = [key for key, until in self._on_until.items() if until <= now]
            for key in expired:
                del self._on_until[key]
        if self.enabled:
            for key in expired:
                self._send(self.publisher.topics.presence(key), OFF.encode())

    def present(self) -> set[str]:
        with self._lock:
            return {self._people[key].id for key in self._on_until if key in self._people}

    # snapshot -----------------------------------------------------------------------------------------
    def event_published(self, event: Event, crop: np.ndarray | None) -> bool:
        """With snapshots on (and not rate-limited), the event's aligned face as a JPEG; True if sent."""
        if not self.settings.snapshot or crop is None or not self._gate.allow(self._clock()):
            return False
        s = self.settings
        data = encode_snapshot(crop, s.snapshot_px, s.snapshot_max_bytes)
        if data is None:
            log.info("snapshot of event %s: over %d bytes, not sent", event.event_id, s.snapshot_max_bytes)
            return False
        props = None
        if self.publisher.settings.protocol == "5":
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("event_id", event.event_id)
            props.ContentType = "image/jpeg"
        sent = self.publisher.publish_message(self.publisher.topics.snapshot, data, qos=0, props=props)
        self.snapshots_sent += int(sent)
        return sent

    def _send(self, topic: str, payload: bytes) -> None:
        # QoS 0: a gallery of hundreds would overflow paho's bounded QoS 1 queue, which the event spool's
        # window needs; the broker still retains them, and every (re)connect re-publishes the whole state.
        self.publisher.publish_message(topic, payload, qos=0, retain=True)
