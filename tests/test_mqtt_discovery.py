"""Home Assistant discovery of the "last person" sensor: the config must read the payloads the device sends.

`test_mqtt_payloads.py` validates the config against its schema and `test_mqtt_client.py` sees it published;
here: per-device identity and topics, the discovery prefix, and that the fields the templates read are the
ones the real event and status payloads carry (no Jinja here, so the templates' paths are checked as data).
"""

from __future__ import annotations

import re

from edgeface.mqtt.discovery import last_person_config
from edgeface.mqtt.payloads import StatusInfo, status_payload
from edgeface.mqtt.topics import DeviceTopics
from edgeface.pipeline.events import recognition_event
from edgeface.types import Identity, Match


def event(match: Match) -> dict:
    return recognition_event(
        device="door1",
        camera="cam0",
        track=1,
        match=match,
        frames=3,
        bbox=(0.0, 0.0, 10.0, 10.0),
        gallery_version=1,
        model_sha256="0f" * 32,
        latency_ms=5.0,
    ).payload()


def test_topics_and_ids_are_per_device_and_follow_the_prefixes() -> None:
    topic, config = last_person_config(DeviceTopics("site7", "door-2"), "1.2.3", discovery_prefix="ha")
    assert topic == "ha/sensor/door-2_last_person/config"
    assert config["state_topic"] == config["json_attributes_topic"] == "site7/door-2/events"
    assert config["availability_topic"] == "site7/door-2/status"
    assert config["unique_id"] == "edgeface_door-2_last_person"
    assert (
        config["device"]["identifiers"] == ["edgeface_door-2"] and config["device"]["sw_version"] == "1.2.3"
    )
    other_topic, other = last_person_config(DeviceTopics("site7", "door-3"), "1.2.3")
    assert other_topic == "homeassistant/sensor/door-3_last_person/config"
    assert other["unique_id"] != config["unique_id"]


def test_the_value_template_reads_the_identity_name_of_a_real_event() -> None:
    _, config = last_person_config(DeviceTopics("edgeface", "door1"), "0")
    template = config["value_template"]
    matched = event(Match("match", Identity("p1", "Ada"), 0.9, 0.2, 0.5))
    stranger = event(Match("unknown", None, 0.2, 0.1, 0.5))
    assert "value_json.identity.name" in template and "value_json.identity else 'unknown'" in template
    assert matched["identity"]["name"] == "Ada"  # the path the template reads
    assert stranger["identity"] is None  # falsy in Jinja: the template shows 'unknown'


def test_availability_reads_the_state_the_status_payload_carries() -> None:
    _, config = last_person_config(DeviceTopics("edgeface", "door1"), "0")
    (field,) = re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", config["availability_template"]).groups()  # type: ignore[union-attr]
    info = StatusInfo("0", 1, 2, "m", "0f" * 32)
    assert status_payload("online", info)[field] == config["payload_available"]
    assert status_payload("offline", info)[field] == config["payload_not_available"]
