"""Damaged or full storage never stops the spool: real SQLite files, real mosquitto, a real tiny tmpfs.

Page damage (bytes 4096-8191 overwritten) is quarantined at open or on the next statement; a full disk
(``max_page_count`` cap, or a tmpfs filled to the last byte) holds events in memory, still delivers them,
counts what the bounded memory queue drops, and a restart on the full disk comes up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.health import SpoolHealth
from edgeface.mqtt.payloads import status_payload
from edgeface.mqtt.spool import Spool
from tests.event_schema import validate, validate_status_with_spool
from tests.factories import STATUS_INFO, Collector, damage_page, make_event, make_settings

EVENTS = "edgeface/door1/events"


def populate(path: Path, n: int, size: int = 400) -> None:
    with Spool(path, 10_000) as spool:
        for i in range(n):
            spool.put(EVENTS, f"{i:06d}".encode() + b"x" * size, 1)


@pytest.mark.parametrize("random", [False, True], ids=["zeros", "random"])
def test_page_damage_at_open_is_quarantined_and_counted(tmp_path: Path, random: bool) -> None:
    path = tmp_path / "spool.sqlite3"
    populate(path, 300)
    size = path.stat().st_size
    damage_page(path, random)
    with Spool(path, 1000) as spool:  # the old code raised sqlite3.DatabaseError from _trim here
        health = spool.health()
        assert health.quarantined_files == 1 and health.mode == "disk"
        assert health.events_lost_unknown  # the table root is gone: nothing can be counted
        assert "malformed" in (health.last_error or "") or "quick_check" in (health.last_error or "")
        assert len(spool) == 0 and spool.dropped == 0
        new_id = spool.put(EVENTS, b"after", 1)
        assert new_id > 300  # ids continue: a publisher's watermark never hides new events
        assert [m.payload for m in spool.pending(10)] == [b"after"]
    (aside,) = tmp_path.glob("spool.sqlite3.corrupt-*")
    assert aside.stat().st_size == size
    with Spool(path, 1000) as spool:  # the new file is healthy; the quarantined one is still reported
        assert [m.payload for m in spool.pending(10)] == [b"after"]
        assert spool.health().quarantined_files == 1 and not spool.health().events_lost_unknown


@pytest.mark.slow
def test_leaf_damage_salvages_the_readable_rows(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    populate(path, 2000, size=100)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:  # a leaf page in the middle of the table
        f.seek(4096 * (pages // 2))
        f.write(b"\0" * 4096)
    with Spool(path, 10_000) as spool:
        health = spool.health()
        kept = [int(m.payload[:6]) for m in spool.pending(5000)]
    assert health.quarantined_files == 1
    assert 1500 < len(kept) < 2000 and kept == sorted(kept) and kept[0] == 0 and kept[-1] == 1999
    assert health.events_lost_unknown or health.events_lost == 2000 - len(kept)


def test_damage_found_while_running_is_quarantined_on_the_next_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spool.sqlite3"
    populate(path, 300)
    with Spool(path, 1000) as spool:
        assert len(spool) == 300
        damage_page(path)
        spool._db.execute("PRAGMA shrink_memory")  # type: ignore[union-attr]  # drop the cached good pages
        new_id = spool.put(EVENTS, b"after", 1)  # no exception: quarantined, recreated, written
        assert new_id == 301
        assert [m.payload for m in spool.pending(10)] == [b"after"]
        assert spool.health().quarantined_files == 1
    assert len(list(tmp_path.glob("spool.sqlite3.corrupt-*"))) == 1
    warnings = [r for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"


def test_header_damage_still_handled(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    populate(path, 10)
    with path.open("r+b") as f:
        f.write(b"\0" * 100)  # the SQLite header
    with Spool(path, 10) as spool:
        assert len(spool) == 0 and spool.health().quarantined_files == 1
        spool.put(EVENTS, b"after", 1)
        assert [m.payload for m in spool.pending(5)] == [b"after"]


@pytest.mark.broker
def test_damaged_spool_publisher_comes_up_and_delivers(tmp_path: Path, broker: Any) -> None:
    settings = make_settings(broker, tmp_path)
    populate(settings.spool_path, 300)
    damage_page(settings.spool_path)
    collector = Collector(broker, [EVENTS, "edgeface/door1/status"])
    try:
        with MqttPublisher(settings, STATUS_INFO) as publisher:  # old code: DatabaseError from the spool
            assert publisher.wait_connected(10)
            events = [make_event(i) for i in range(5)]
            for event in events:
                publisher.publish_event(event)
            want = {e.event_id for e in events}
            assert collector.wait(lambda ms: want <= {_id(m) for m in ms if m.topic == EVENTS}, 15)
            stats = publisher.stats()
            assert stats.spool.quarantined_files == 1 and stats.spool.events_lost_unknown
            assert stats.as_dict()["spool"]["quarantined_files"] == 1
            assert collector.wait(lambda ms: any(_spool_status(m) for m in ms), 10)
        status = [_spool_status(m) for m in collector.messages if _spool_status(m)][-1]
        validate_status_with_spool(status)
        assert status["spool"]["quarantined_files"] == 1
    finally:
        collector.close()


def _id(message: Any) -> str:
    return str(json.loads(message.payload).get("event_id"))


def _spool_status(message: Any) -> dict[str, Any] | None:
    if not message.topic.endswith("/status"):
        return None
    payload = json.loads(message.payload)
    return payload if "spool" in payload else None


def test_status_payload_spool_field_is_additive() -> None:
    plain = status_payload("online", STATUS_INFO)
    validate("status", plain)  # unchanged without spool health
    with_spool = status_payload("online", STATUS_INFO, spool=SpoolHealth(mode="memory", events_in_memory=3))
    validate_status_with_spool(with_spool)
    assert {k: v for k, v in with_spool.items() if k != "spool"} | {"ts": plain["ts"]} == plain
    assert with_spool["spool"]["mode"] == "memory" and with_spool["spool"]["events_in_memory"] == 3
