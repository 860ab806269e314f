"""Home Assistant discovery configs: topics, stable unique ids, the device block, and templates that read the
payloads the device really sends (no Jinja here, so the templates' paths are checked as data).

`test_mqtt_homeassistant.py` sees them published by a real publisher; `test_mqtt_payloads.py` validates them
against their schema.
"""

from __future__ import annotations

import re

from edgeface.mqtt.discovery import Discovery, DoorInfo, ha_key
from edgeface.mqtt.payloads import Metrics, StatusInfo, status_payload
from edgeface.mqtt.topics import DeviceTopics
from edgeface.pipeline.events import recognition_event
from edgeface.types import Identity, Match
from tests.event_schema import validate

INFO = DoorInfo("facerec128", "1.2.3")


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


def test_every_entity_sits_under_one_node_and_one_device_per_door() -> None:
    door2 = Discovery(DeviceTopics("site7", "door-2"), INFO, "ha")
    entities = door2.entities([Identity("p1", "Ada")], snapshot=False)
    topics = {door2.topic(e) for e in entities}
    assert "ha/binary_sensor/edgeface_door-2/person_p1/config" in topics
    assert "ha/event/edgeface_door-2/visitor/config" in topics
    assert all(t.startswith("ha/") and "/edgeface_door-2/" in t for t in topics)
    devices = {repr(e.config["device"]) for e in entities}
    assert len(devices) == 1
    device = entities[0].config["device"]
    assert device["identifiers"] == ["edgeface_door-2"] and device["sw_version"] == "1.2.3"
    assert "facerec128" in device["model"] and "configuration_url" not in device
    door3 = Discovery(DeviceTopics("site7", "door-3"), DoorInfo("m", "1", "http://door-3.local:8080/"))
    assert door3.device()["configuration_url"] == "http://door-3.local:8080/"
    ids2 = {e.config["unique_id"] for e in entities}
    ids3 = {e.config["unique_id"] for e in door3.entities([Identity("p1", "Ada")], snapshot=False)}
    assert not ids2 & ids3 and len(ids2) == len(entities)
    for entity in entities:
        validate("ha_discovery", entity.config)
        assert entity.config["availability_topic"] == "site7/door-2/status"


def test_a_person_keeps_their_unique_id_and_topics_across_a_rename_and_ids_need_no_names() -> None:
    discovery = Discovery(DeviceTopics("edgeface", "door1"), INFO)
    before, after = discovery.presence(Identity("p1", "Ada")), discovery.presence(Identity("p1", "Ada L."))
    assert before.config["unique_id"] == after.config["unique_id"] == "edgeface_door1_person_p1"
    assert discovery.topic(before) == discovery.topic(after)
    assert (before.config["name"], after.config["name"]) == ("Ada", "Ada L.")
    assert before.config["state_topic"] == "edgeface/door1/presence/p1"
    odd = discovery.presence(Identity("Zoë/ü+#", "Zoë"))  # not a valid object id or topic level as it is
    key = ha_key("Zoë/ü+#")
    assert re.fullmatch(r"h_[0-9a-f]{20}", key) and odd.object_id == f"person_{key}"
    assert ha_key("h_trick") != "h_trick"  # a plain id cannot pose as another id's hash
    assert ha_key("Zoë/ü+#") != ha_key("Zoe/u+#")


def test_diagnostics_are_diagnostic_and_read_fields_the_status_and_metrics_carry() -> None:
    discovery = Discovery(DeviceTopics("edgeface", "door1"), INFO)
    diagnostics = {e.object_id: e.config for e in discovery.diagnostics()}
    wanted = {"gallery_version", "gallery_size", "threshold", "threshold_source", "model", "fps",
              "dropped_frames", "spool_depth", "incidents"}  # fmt: skip
    assert set(diagnostics) == wanted
    assert {c["entity_category"] for c in diagnostics.values()} == {"diagnostic"}
    info = StatusInfo("0", 4, 2, "facerec128", "0f" * 32, decision={"threshold": 0.4, "source": "gallery"})
    status = status_payload("online", info)
    metrics = Metrics(device="door1", fps=9.5, stages={}, queues={"frames": 0, "spool": 3}, dropped_frames=7,
                      uptime_s=1.0, incidents={"reload_refused": 1}).payload()  # fmt: skip
    for config in diagnostics.values():
        payload = status if config["state_topic"] == "edgeface/door1/status" else metrics
        assert config["state_topic"] in ("edgeface/door1/status", "edgeface/door1/metrics")
        path = re.search(r"value_json\.([\w.]+)", config["value_template"]).group(1)  # type: ignore[union-attr]
        value = payload
        for part in path.split("."):
            if part == "values":  # `incidents.values() | sum`: a method of the dict, not a field
                break
            value = value[part]
        assert value is not None, path


def test_the_visitor_event_reads_the_decision_identity_score_and_event_id_of_real_events() -> None:
    config = Discovery(DeviceTopics("edgeface", "door1"), INFO).visitor().config
    assert config["state_topic"] == "edgeface/door1/events"
    assert config["event_types"] == ["match", "unknown"]
    template = config["value_template"]
    matched = event(Match("match", Identity("p1", "Ada"), 0.9, 0.2, 0.5))
    stranger = event(Match("unknown", None, 0.2, 0.1, 0.5))
    for field in re.findall(r"value_json\.(\w+)", template):
        assert field in matched and field in stranger
    assert "'event_type': value_json.decision" in template and "| to_json" in template
    assert {matched["decision"], stranger["decision"]} == set(config["event_types"])
    assert stranger["identity"] is None  # falsy in Jinja: the template gives none
    assert "value_json.identity.id if value_json.identity else none" in template


def test_availability_reads_the_state_the_status_payload_carries() -> None:
    config = Discovery(DeviceTopics("edgeface", "door1"), INFO).last_person().config
    (field,) = re.fullmatch(r"\{\{ value_json\.(\w+) \}\}", config["availability_template"]).groups()  # type: ignore[union-attr]
    info = StatusInfo("0", 1, 2, "m", "0f" * 32)
    assert status_payload("online", info)[field] == config["payload_available"]
    assert status_payload("offline", info)[field] == config["payload_not_available"]


def test_the_image_entity_exists_only_with_snapshots_on() -> None:
    discovery = Discovery(DeviceTopics("edgeface", "door1"), INFO)
    assert "image" not in {e.component for e in discovery.entities([], snapshot=False)}
    (image,) = [e for e in discovery.entities([], snapshot=True) if e.component == "image"]
    assert image.config["image_topic"] == "edgeface/door1/snapshot"
    assert image.config["content_type"] == "image/jpeg"
