"""Every topic string of docs/design.md §6 comes from edgeface.mqtt.topics: names, filters, parsing, bad
levels."""

from __future__ import annotations

import pytest

from edgeface.mqtt.topics import (
    EVENTS,
    GALLERY_STATE,
    DeviceTopics,
    every_device,
    fleet_gallery,
    fleet_gallery_chunk,
    fleet_gallery_chunks,
    ha_discovery_config,
    parse_fleet_gallery_chunk,
)


def test_topics() -> None:
    topics = DeviceTopics("edgeface", "door1")
    assert (topics.status, topics.events, topics.metrics, topics.gallery_state) == (
        "edgeface/door1/status",
        "edgeface/door1/events",
        "edgeface/door1/metrics",
        "edgeface/door1/gallery/state",
    )
    assert DeviceTopics("site/a", "d").events == "site/a/d/events"
    assert fleet_gallery("edgeface", "f1") == "edgeface/fleet/f1/gallery"
    assert fleet_gallery_chunk("edgeface", "f1", 12, 0) == "edgeface/fleet/f1/gallery/12/0"


@pytest.mark.parametrize("device", ["", "a/b", "a+", "#", "x\0"])
def test_device_names_that_would_break_topics(device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        DeviceTopics("edgeface", device)


def test_filters_for_every_device_and_every_chunk() -> None:
    assert every_device("edgeface", EVENTS) == "edgeface/+/events"
    assert every_device("site/a", GALLERY_STATE) == "site/a/+/gallery/state"
    assert fleet_gallery_chunks("edgeface", "f1") == "edgeface/fleet/f1/gallery/+/+"
    assert fleet_gallery_chunks("edgeface", "f1", 7) == "edgeface/fleet/f1/gallery/7/+"
    assert ha_discovery_config("homeassistant", "door1_last_person") == (
        "homeassistant/sensor/door1_last_person/config"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: every_device("edgeface", "gallery"), "unknown per-device topic"),
        (lambda: every_device("edge/+", EVENTS), "prefix"),
        (lambda: fleet_gallery_chunks("edgeface", "f1", -1), "version"),
        (lambda: fleet_gallery_chunk("edgeface", "f1", 1, -1), "n must be"),
        (lambda: fleet_gallery("edgeface", "a/b"), "fleet"),
        (lambda: ha_discovery_config("homeassistant", "a/b"), "object_id"),
    ],
)
def test_builders_refuse_what_would_make_another_topic(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("edgeface/fleet/f1/gallery/12/0", (12, 0)),
        ("edgeface/fleet/f1/gallery/3/41", (3, 41)),
        ("edgeface/fleet/f1/gallery", None),  # the announcement itself
        ("edgeface/fleet/f2/gallery/12/0", None),  # another fleet
        ("edgeface/fleet/f1/gallery/12", None),
        ("edgeface/fleet/f1/gallery/x/0", None),
        ("edgeface/fleet/f1/gallery/12/0/1", None),
        ("other/fleet/f1/gallery/12/0", None),
    ],
)
def test_chunk_topics_parse_back_to_version_and_index(topic: str, expected: tuple[int, int] | None) -> None:
    assert parse_fleet_gallery_chunk("edgeface", "f1", topic) == expected


def test_a_built_chunk_topic_parses_back() -> None:
    assert parse_fleet_gallery_chunk("a/b", "f", fleet_gallery_chunk("a/b", "f", 9, 4)) == (9, 4)
