"""A full disk never stops the spool: events wait in a bounded memory queue, are still delivered, drops are
counted, and a (re)start on the full disk comes up. Two real full disks: a database capped with SQLite's
``max_page_count``, and (as root, where ``mount -t tmpfs`` works) a 256 KiB tmpfs filled to the last byte.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.spool import Spool
from tests.conftest import Broker
from tests.event_schema import validate_status_with_spool
from tests.factories import STATUS_INFO, Collector, make_event, make_settings

EVENTS = "edgeface/door1/events"


def fill_until_full(spool: Spool, size: int = 400) -> int:
    """Put until the spool leaves disk mode; returns how many went to disk."""
    n = 0
    while spool.health().mode == "disk":
        spool.put(EVENTS, b"d" * size, 1)
        n += 1
        assert n < 100_000, "the cap never filled"
    return n - 1


def test_page_cap_holds_events_in_memory_and_counts_drops(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite3"
    with Spool(path, 10_000, memory_events=50, retry_s=0.05, max_pages=16) as spool:
        on_disk = fill_until_full(spool)  # the old code raised SpoolError "database or disk is full"
        assert on_disk > 10
        ids = [spool.put(EVENTS, f"m{i}".encode(), 1) for i in range(80)]
        health = spool.health()
        assert health.mode == "memory" and health.events_in_memory == 50
        assert health.events_dropped_disk_full == 81 - 50  # the one that hit the cap, plus 80, minus 50
        assert "full" in (health.last_error or "")
        pending = spool.pending(100_000)
        assert [m.id for m in pending] == sorted(m.id for m in pending)  # disk then memory, in id order
        assert [m.payload for m in pending[-50:]] == [f"m{i}".encode() for i in range(30, 80)]
        assert len(spool) == on_disk + 50
        # acks free pages; the next retry moves the memory queue to disk and leaves memory mode
        assert spool.ack_many([m.id for m in pending[:on_disk]]) == on_disk
        time.sleep(0.06)
        spool.maintain()
        assert spool.health().mode == "disk" and spool.health().events_in_memory == 0
        assert [m.id for m in spool.pending(100)] == ids[30:]
    with Spool(path, 10_000, max_pages=16) as spool:  # what was moved to disk survives a restart
        assert [m.payload for m in spool.pending(100)] == [f"m{i}".encode() for i in range(30, 80)]


@pytest.mark.broker
def test_page_cap_publisher_delivers_from_memory_and_restarts(tmp_path: Path, broker: Broker) -> None:
    settings = make_settings(broker, tmp_path, spool_max_pages=16, spool_memory_events=40, spool_retry_s=0.2)
    collector = Collector(broker, [EVENTS, "edgeface/door1/status"])
    broker.stop()
    try:
        publisher = MqttPublisher(settings, STATUS_INFO)
        publisher.start()
        events = [make_event(i) for i in range(250)]
        for event in events:
            publisher.publish_event(event)  # never raises, disk full or not
        health = publisher.spool_health
        assert health.mode == "memory" and health.events_in_memory == 40
        dropped = health.events_dropped_disk_full
        assert dropped > 0
        broker.start()
        assert publisher.wait_connected(15)
        want = 250 - dropped
        assert collector.wait(lambda ms: len({_id(m) for m in ms if m.topic == EVENTS}) >= want, 30)
        got = {_id(m) for m in collector.messages if m.topic == EVENTS}
        assert got <= {e.event_id for e in events} and len(got) == want
        assert events[-1].event_id in got  # the newest survive; the oldest held in memory were dropped
        stats = publisher.stats()
        assert stats.as_dict()["spool"]["events_dropped_disk_full"] == dropped
        status = [json.loads(m.payload) for m in collector.messages if m.topic.endswith("/status")][-1]
        validate_status_with_spool(status)
        assert status["spool"]["events_dropped_disk_full"] == dropped
        publisher.close()
        with MqttPublisher(settings, STATUS_INFO) as again:  # restart on the capped file comes up
            assert again.wait_connected(10)
            again.publish_event(make_event(999))
    finally:
        collector.close()


def _id(message: Any) -> str:
    return str(json.loads(message.payload)["event_id"])


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs; needs root and a kernel that lets this process mount."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_disk(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


@pytest.mark.broker
def test_full_tmpfs_restart_comes_up_in_memory_and_delivers(tiny_disk: Path, broker: Broker) -> None:
    settings = make_settings(broker, tiny_disk, spool_memory_events=20, spool_retry_s=0.2)
    with Spool(settings.spool_path, 1000) as spool:  # a spool with 5 events waiting, then the disk fills
        old = [spool.put(EVENTS, json.dumps({"event_id": f"old-{i}"}).encode(), 1) for i in range(5)]
    assert len(old) == 5
    filler = fill_disk(tiny_disk)
    collector = Collector(broker, [EVENTS])
    try:
        # the old code raised SpoolError "cannot open the MQTT spool (disk I/O error)" here
        with MqttPublisher(settings, STATUS_INFO) as publisher:
            assert publisher.spool_health.mode == "memory"
            assert publisher.wait_connected(10)
            events = [make_event(i) for i in range(30)]
            for event in events:
                publisher.publish_event(event)
            want = {e.event_id for e in events[10:]}  # 20 held in memory; the 10 oldest dropped
            assert collector.wait(lambda ms: want <= {_id(m) for m in ms}, 15)
            assert publisher.spool_health.events_dropped_disk_full == 10
            filler.unlink()  # space again: the spool reopens and the 5 waiting on disk go out too
            olds = {f"old-{i}" for i in range(5)}
            assert collector.wait(lambda ms: olds <= {_id(m) for m in ms}, 15)
            assert publisher.spool_health.mode == "disk"
    finally:
        collector.close()
