"""Home Assistant MQTT discovery configs of one door (docs/home-assistant.md): pure builders, no I/O.

Every entity of a door sits under one discovery node (``<prefix>/<component>/edgeface_<device>/<object>/config``)
and one HA device. Unique ids come from the device id and, for a person, the identity id (never a name), so
they survive restarts and renames. The templates read the payloads of docs/design.md §6 as they are.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from edgeface.mqtt.topics import DeviceTopics, ha_entity_config
from edgeface.types import Identity

ON, OFF = "ON", "OFF"
EVENT_TYPES = ("match", "unknown")
_SAFE = re.compile(r"[A-Za-z0-9_-]{1,48}")

# Shows the name of the last recognised person, or "unknown" for a stranger.
_LAST_PERSON = "{{ value_json.identity.name if value_json.identity else 'unknown' }}"
# The event entity needs a JSON object with `event_type`; the other keys become its attributes.
_VISITOR = (
    "{{ {'event_type': value_json.decision,"
    " 'identity': value_json.identity.id if value_json.identity else none,"
    " 'name': value_json.identity.name if value_json.identity else none,"
    " 'score': value_json.score, 'event_id': value_json.event_id,"
    " 'camera': value_json.camera, 'ts': value_json.ts} | to_json }}"
)


def ha_key(text: str) -> str:
    """A topic- and object-id-safe key of a device or identity id: the id itself when it is plain
    (letters, digits, ``_``, ``-``), else ``h_`` and a hash of it (stable, never a name)."""
    if _SAFE.fullmatch(text) and not text.startswith("h_"):
        return text
    return "h_" + hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class DoorInfo:
    """What the HA device block says about the door."""

    model: str  # the embedder model name
    sw_version: str
    configuration_url: str = ""


@dataclass(frozen=True, slots=True)
class Entity:
    component: str  # binary_sensor, sensor, event, image
    object_id: str
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Diagnostic:
    object_id: str
    name: str
    source: str  # "status" or "metrics"
    template: str
    unit: str = ""
    icon: str = "mdi:information-outline"


_DIAGNOSTICS = (
    _Diagnostic("gallery_version", "Gallery version", "status", "{{ value_json.gallery.version }}",
                icon="mdi:source-branch"),
    _Diagnostic("gallery_size", "Enrolled people", "status", "{{ value_json.gallery.count }}",
                icon="mdi:account-group"),
    _Diagnostic("threshold", "Decision threshold", "status",
                "{{ value_json.decision.threshold if value_json.decision is defined else none }}",
                icon="mdi:tune-vertical"),
    _Diagnostic("threshold_source", "Threshold source", "status",
                "{{ value_json.decision.source if value_json.decision is defined else 'unknown' }}",
                icon="mdi:tune-vertical"),
    _Diagnostic("model", "Model", "status", "{{ value_json.model.name }}", icon="mdi:brain"),
    _Diagnostic("fps", "Frames per second", "metrics", "{{ value_json.fps }}", "fps", "mdi:speedometer"),
    _Diagnostic("dropped_frames", "Dropped frames", "metrics", "{{ value_json.dropped_frames }}",
                icon="mdi:filmstrip-off"),
    _Diagnostic("spool_depth", "Events waiting", "metrics", "{{ value_json.queues.spool }}",
                icon="mdi:tray-full"),
    _Diagnostic("incidents", "Incidents", "metrics",
                "{{ value_json.incidents.values() | sum if value_json.incidents is defined else 0 }}",
                icon="mdi:alert-circle-outline"),
)  # fmt: skip


class Discovery:
    """The discovery configs of one door: device block, availability, and one builder per entity kind."""

    def __init__(self, topics: DeviceTopics, info: DoorInfo, discovery_prefix: str = "homeassistant") -> None:
        self.topics = topics
        self.info = info
        self.prefix = discovery_prefix
        self.node = f"edgeface_{ha_key(topics.device)}"

    def topic(self, entity: Entity) -> str:
        return ha_entity_config(self.prefix, entity.component, self.node, entity.object_id)

    def device(self) -> dict[str, Any]:
        block: dict[str, Any] = {
            "identifiers": [self.node],
            "name": f"edgeface {self.topics.device}",
            "manufacturer": "edgeface",
            "model": f"door unit ({self.info.model})",
            "sw_version": self.info.sw_version,
        }
        if self.info.configuration_url:
            block["configuration_url"] = self.info.configuration_url
        return block

    def _entity(self, component: str, object_id: str, name: str, **fields: Any) -> Entity:
        config: dict[str, Any] = {
            "name": name,
            "unique_id": f"{self.node}_{object_id}",
            "availability_topic": self.topics.status,
            "availability_template": "{{ value_json.state }}",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": self.device(),
            **fields,
        }
        return Entity(component, object_id, config)

    def presence(self, person: Identity) -> Entity:
        key = ha_key(person.id)
        return self._entity(
            "binary_sensor", f"person_{key}", person.name or person.id,
            state_topic=self.topics.presence(key), payload_on=ON, payload_off=OFF,
            device_class="presence", icon="mdi:account-check",
        )  # fmt: skip

    def visitor(self) -> Entity:
        return self._entity(
            "event", "visitor", "Visitor", state_topic=self.topics.events, value_template=_VISITOR,
            event_types=list(EVENT_TYPES), icon="mdi:doorbell-video",
        )  # fmt: skip

    def last_person(self) -> Entity:
        return self._entity(
            "sensor", "last_person", "Last person", state_topic=self.topics.events,
            value_template=_LAST_PERSON, json_attributes_topic=self.topics.events, icon="mdi:account-eye",
        )  # fmt: skip

    def snapshot(self) -> Entity:
        return self._entity(
            "image", "face", "Last face", image_topic=self.topics.snapshot, content_type="image/jpeg",
            icon="mdi:face-recognition",
        )  # fmt: skip

    def diagnostics(self) -> list[Entity]:
        out = []
        for d in _DIAGNOSTICS:
            topic = self.topics.status if d.source == "status" else self.topics.metrics
            extra: dict[str, Any] = {"unit_of_measurement": d.unit} if d.unit else {}
            out.append(self._entity(
                "sensor", d.object_id, d.name, state_topic=topic, value_template=d.template,
                entity_category="diagnostic", icon=d.icon, **extra,
            ))  # fmt: skip
        return out

    def entities(self, people: Iterable[Identity], snapshot: bool) -> list[Entity]:
        """Every entity of the door for this gallery (the image entity only with snapshots on)."""
        fixed = [self.visitor(), self.last_person(), *self.diagnostics()]
        return fixed + ([self.snapshot()] if snapshot else []) + [self.presence(p) for p in people]
