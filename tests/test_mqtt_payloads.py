"""§6 payload builders and that the schemas reject bad payloads (settings: test_mqtt_settings.py)."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import pytest

from edgeface.mqtt.discovery import Discovery, DoorInfo
from edgeface.mqtt.payloads import (
    GalleryState,
    Metrics,
    StageLatency,
    StatusInfo,
    encode,
    status_payload,
)
from edgeface.mqtt.topics import DeviceTopics
from edgeface.pipeline.events import recognition_event
from edgeface.types import Identity, Match
from tests.event_schema import validate

SHA = "0f" * 32


def _event(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "device": "door1",
        "camera": "cam0",
        "track": 7,
        "match": Match("match", Identity("p1", "Ada"), 0.62, 0.11, 0.45),
        "frames": 3,
        "bbox": (1.04, 2.0, 30.0, 40.0),
        "gallery_version": 2,
        "model_sha256": SHA,
        "latency_ms": 81.234,
    }
    values.update(overrides)
    return recognition_event(**values).payload()


def test_events_validate_and_have_fresh_ids() -> None:
    match, unknown = _event(), _event(match=Match("unknown", None, 0.3, 0.01, 0.45))
    for payload in (match, unknown):
        validate("event", payload)
        assert json.loads(encode(payload)) == payload
    assert match["event_id"] != unknown["event_id"]
    assert match["identity"] == {"id": "p1", "name": "Ada"} and unknown["identity"] is None
    assert match["bbox"] == [1.0, 2.0, 30.0, 40.0] and match["latency_ms"] == 81.23


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"match": Match("match", None, 0.9, 0.2, 0.45)}, "identity"),
        ({"match": Match("maybe", None, 0.9, 0.2, 0.45)}, "decision"),
        ({"bbox": (1, 2, 3)}, "bbox"),
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"match": Match("unknown", None, math.inf, 0.2, 0.45)}, "score"),
    ],
)
def test_event_builder_rejects_bad_input(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _event(**overrides)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("event_id"),
        lambda e: e.update(event_id="not-a-uuid"),
        lambda e: e.update(ts="2026-01-02 03:04:05"),
        lambda e: e.update(decision="unknown"),  # with an identity
        lambda e: e.update(bbox=[1, 2, 3]),
        lambda e: e.update(model_sha256="xyz"),
        lambda e: e.update(extra_field=1),
        lambda e: e.update(identity={"id": "p1"}),
    ],
)
def test_event_schema_rejects_bad_payloads(mutate: Any) -> None:
    event = _event()
    mutate(event)
    with pytest.raises(jsonschema.ValidationError):
        validate("event", event)


def test_status_gallery_state_metrics_and_discovery_validate() -> None:
    info = StatusInfo("0.1.0", None, 0, "ghostfacenet", SHA)
    for state in ("online", "offline"):
        validate("status", status_payload(state, info))
    with pytest.raises(ValueError, match="state"):
        status_payload("sleeping", info)
    validate("gallery_state", GalleryState(3, "applied").payload())
    validate("gallery_state", GalleryState(4, "rejected", "signature does not verify").payload())
    with pytest.raises(jsonschema.ValidationError):
        validate("gallery_state", GalleryState(4, "rejected").payload())  # a rejection says why
    metrics = Metrics(
        device="door1",
        fps=15.0,
        stages={"embed": StageLatency(20.0, 31.5)},
        queues={"frames": 2},
        dropped_frames=0,
        uptime_s=3.0,
    ).payload()
    validate("metrics", metrics)
    discovery = Discovery(DeviceTopics("edgeface", "door1"), DoorInfo("facerec128", "0.1.0"))
    entities = discovery.entities([Identity("p1", "Ada")], snapshot=True)
    assert {e.component for e in entities} == {"binary_sensor", "event", "sensor", "image"}
    for entity in entities:
        validate("ha_discovery", entity.config)


def test_fleet_announcement_and_manifest_schemas_match_the_sync_format() -> None:
    import base64

    from edgeface.sync.chunks import announcement_bytes, split_chunks
    from edgeface.sync.manifest import manifest_bytes, parse_manifest

    fields = {
        "format": "edgeface-bundle/1",
        "fleet": "f1",
        "version": 3,
        "created": "2026-11-23T12:00:00Z",
        "expires": None,
        "model_sha256": SHA,
        "dim": 128,
        "dtype": "float32",
        "count": 2,
        "identities": "1" * 64,
        "vectors": "2" * 64,
    }
    manifest = manifest_bytes(fields)
    parse_manifest(manifest)  # the sync side accepts it
    payload = bytes(range(256)) * 5
    announcement = json.loads(announcement_bytes(manifest, b"s" * 64, payload, split_chunks(payload, 300)))
    validate("fleet_announcement", announcement)
    validate("bundle_manifest", json.loads(base64.b64decode(announcement["manifest"])))
    with pytest.raises(jsonschema.ValidationError):
        validate("bundle_manifest", {**fields, "remove": ["p1"]})  # delta fields need base_version


def test_gallery_state_schema_accepts_the_sync_clients_extra_fields() -> None:
    state = {
        **GalleryState(3, "applied", "running the stored gallery").payload(),
        "running": 3,
        "fleet": "f1",
    }
    validate("gallery_state", {**state, "expired": False})
    with pytest.raises(jsonschema.ValidationError):
        validate("gallery_state", {**state, "running": "three"})
