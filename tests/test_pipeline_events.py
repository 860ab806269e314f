"""The typed recognition event: built from a Match, checked on construction, and its §6 JSON form."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from edgeface.mqtt.payloads import encode
from edgeface.pipeline.events import Event, recognition_event
from edgeface.pipeline.recognize import Recognition
from edgeface.types import Identity, Match
from tests.event_schema import validate

SHA = "0f" * 32
ADA = Match("match", Identity("p1", "Ada"), 0.62, 0.11, 0.45)


def _event(match: Match = ADA, **overrides: Any) -> Event:
    values: dict[str, Any] = {
        "device": "door1",
        "camera": "cam0",
        "track": 7,
        "match": match,
        "frames": 3,
        "bbox": (1.04, 2.0, 30.0, 40.0),
        "gallery_version": 2,
        "model_sha256": SHA,
        "latency_ms": 81.234,
        "when": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    }
    return recognition_event(**(values | overrides))


def test_event_carries_the_match_and_a_fresh_uuid() -> None:
    event = _event()
    assert (event.decision, event.identity, event.score, event.margin, event.threshold) == (
        "match",
        Identity("p1", "Ada"),
        0.62,
        0.11,
        0.45,
    )
    assert uuid.UUID(event.event_id).version == 4 and _event().event_id != event.event_id
    assert event.ts == "2026-01-02T03:04:05.678Z"
    assert event.bbox == (1.04, 2.0, 30.0, 40.0)  # exact until encoded


def test_an_event_from_a_recognition_carries_its_track_match_and_gallery() -> None:
    recognition = Recognition(
        "cam1", 9, ADA, 4, (5.0, 6.0, 70.0, 80.0), 12.5, 3, np.ones(4, np.float32), "correction"
    )
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = Event.from_recognition(
        recognition, device="door2", model_sha256=SHA, latency_ms=9.5, corrects="e1", when=when
    )
    assert event == dataclasses.replace(
        _event(
            device="door2",
            camera="cam1",
            track=9,
            frames=4,
            bbox=(5.0, 6.0, 70.0, 80.0),
            gallery_version=3,
            latency_ms=9.5,
            corrects="e1",
            when=when,
        ),
        event_id=event.event_id,
    )


def test_payload_is_the_design_json_and_reads_back() -> None:
    earlier = str(uuid.uuid4())
    event = _event(corrects=earlier)
    payload = event.payload()
    validate("event", payload)
    assert payload["bbox"] == [1.0, 2.0, 30.0, 40.0] and payload["latency_ms"] == 81.23
    assert payload["identity"] == {"id": "p1", "name": "Ada"} and payload["corrects"] == earlier
    again = Event.from_payload(json.loads(encode(payload)))
    assert again.payload() == payload
    assert "corrects" not in _event().payload()


def test_unknown_has_no_identity_in_either_form() -> None:
    event = _event(Match("unknown", None, 0.3, 0.01, 0.45))
    assert event.identity is None and event.payload()["identity"] is None
    assert Event.from_payload(event.payload()).decision == "unknown"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decision": "maybe"}, "decision"),
        ({"decision": "unknown"}, "identity"),  # an unknown that names someone
        ({"identity": None}, "identity"),  # a match that names no one
        ({"bbox": (1.0, 2.0, 3.0)}, "bbox"),
        ({"bbox": (1.0, math.nan, 3.0, 4.0)}, "bbox"),
        ({"score": math.inf}, "score"),
        ({"margin": "0.1"}, "margin"),
        ({"threshold": True}, "threshold"),
        ({"latency_ms": math.nan}, "latency_ms"),
    ],
)
def test_construction_refuses_an_event_consumers_could_not_trust(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(_event(), **change)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.pop("event_id"), "missing field 'event_id'"),
        (lambda p: p.update(identity={"id": "p1"}), "missing field 'name'"),
        (lambda p: p.update(bbox=None), "malformed"),
        (lambda p: p.update(decision="maybe"), "decision"),
    ],
)
def test_from_payload_names_the_bad_field(mutate: Any, message: str) -> None:
    payload = _event().payload()
    mutate(payload)
    with pytest.raises(ValueError, match=message):
        Event.from_payload(payload)


def test_numpy_numbers_from_the_pipeline_are_accepted() -> None:
    import numpy as np

    event = _event(bbox=np.array([1.5, 2.5, 30.0, 40.0], np.float32), latency_ms=np.float64(5.0))
    assert event.payload()["bbox"] == [1.5, 2.5, 30.0, 40.0]
    assert json.loads(encode(event.payload()))["latency_ms"] == 5.0


def test_an_event_made_directly_from_numpy_values_encodes() -> None:
    import numpy as np

    event = dataclasses.replace(_event(), bbox=tuple(np.float32([1, 2, 3, 4])), score=np.float32(0.5))
    assert json.loads(encode(event.payload()))["score"] == 0.5
