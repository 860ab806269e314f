"""Optional Home Assistant MQTT discovery: a door unit appears as a device with a "last person" sensor."""

from __future__ import annotations

from typing import Any

from edgeface.mqtt.topics import DeviceTopics, ha_discovery_config

# Shows the name of the last recognised person, or "unknown" for a stranger.
_VALUE_TEMPLATE = "{{ value_json.identity.name if value_json.identity else 'unknown' }}"


def last_person_config(
    topics: DeviceTopics, version: str, discovery_prefix: str = "homeassistant"
) -> tuple[str, dict[str, Any]]:
    """(retained config topic, config payload) of the "last person" sensor of one device."""
    object_id = f"{topics.device}_last_person"
    topic = ha_discovery_config(discovery_prefix, object_id)
    payload: dict[str, Any] = {
        "name": "Last person",
        "unique_id": f"edgeface_{object_id}",
        "state_topic": topics.events,
        "value_template": _VALUE_TEMPLATE,
        "json_attributes_topic": topics.events,
        "availability_topic": topics.status,
        "availability_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "icon": "mdi:account-eye",
        "device": {
            "identifiers": [f"edgeface_{topics.device}"],
            "name": f"edgeface {topics.device}",
            "manufacturer": "edgeface",
            "model": "door unit",
            "sw_version": version,
        },
    }
    return topic, payload
