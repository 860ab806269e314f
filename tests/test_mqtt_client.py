"""MqttPublisher against a real mosquitto: schema, retained status and Last Will, outages, SIGKILL, bounds."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.payloads import (
    GalleryState,
    Metrics,
    StageLatency,
    StatusInfo,
)
from edgeface.pipeline.events import Event
from tests.conftest import Broker, make_broker
from tests.event_schema import validate
from tests.factories import MODEL, STATUS_INFO, Collector, has_ids, make_event, make_settings

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[1]


def ids_of(items: Sequence[Event | dict[str, Any]]) -> list[str]:
    """event_ids of sent events or of received payloads."""
    return [i.event_id if isinstance(i, Event) else i["event_id"] for i in items]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """conftest's broker, plus ``user root`` when tests run as root: otherwise mosquitto drops to the
    ``mosquitto`` user, cannot write its persistence file in tmp_path, and forgets the collector's
    session across ``stop()``/``start()``."""
    instance = make_broker(tmp_path, "user root\n" if os.geteuid() == 0 else "")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def collector(broker: Broker) -> Iterator[Collector]:
    c = Collector(broker, ["edgeface/#", "homeassistant/#"])
    try:
        yield c
    finally:
        c.close()


def test_events_arrive_with_the_section6_schema(broker: Broker, collector: Collector, tmp_path: Path) -> None:
    with MqttPublisher(make_settings(broker, tmp_path), STATUS_INFO) as publisher:
        assert publisher.wait_connected(5)
        events = [make_event(i, None if i % 2 else "Ada") for i in range(6)]
        for event in events:
            publisher.publish_event(event)
        topic = publisher.topics.events
        assert collector.wait(has_ids(topic, set(ids_of(events))))
        deadline = time.monotonic() + 5
        while publisher.stats().pending and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = publisher.stats()
    received = collector.payloads(topic)
    assert ids_of(received) == ids_of(events)  # no outage: exactly once and in order
    for payload in received:
        validate("event", payload)
    assert (stats.spooled, stats.sent, stats.acked, stats.pending, stats.dropped) == (6, 6, 6, 0, 0)
    statuses = collector.payloads("edgeface/door1/status")
    for payload in statuses:
        validate("status", payload)
    assert [s["state"] for s in statuses] == ["online", "offline"]  # close() says offline cleanly


def _spawn_publisher(broker_port: int, spool: Path, keepalive: int = 5) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = ["--host", "127.0.0.1", "--port", str(broker_port), "--device", "door1", "--spool", str(spool)]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeface.mqtt",
            *args,
            "--keepalive",
            str(keepalive),
            "--flush-timeout",
            "10",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _feed(proc: subprocess.Popen[str], events: list[Event]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    for event in events:
        proc.stdin.write(json.dumps(event.payload()) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line.strip() == f"spooled {event.event_id}", line


def _retained_status(broker: Broker) -> dict[str, Any]:
    fresh = Collector(broker, ["edgeface/door1/status"])
    try:
        assert fresh.wait(lambda msgs: bool(msgs), 5)
        assert fresh.messages[0].retain
        return json.loads(fresh.messages[0].payload)
    finally:
        fresh.close()


def test_last_will_offline_when_the_publisher_is_sigkilled(
    broker: Broker, collector: Collector, tmp_path: Path
) -> None:
    proc = _spawn_publisher(broker.port, tmp_path / "spool.db")
    try:
        assert collector.wait(lambda msgs: any(m.topic.endswith("/status") for m in msgs), 10)
        assert _retained_status(broker)["state"] == "online"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        assert collector.wait(lambda msgs: b'"offline"' in msgs[-1].payload, 10)
    finally:
        proc.kill()
    status = _retained_status(broker)
    validate("status", status)
    assert status["state"] == "offline"


def test_broker_outage_loses_no_event(broker: Broker, collector: Collector, tmp_path: Path) -> None:
    topic = "edgeface/door1/events"
    with MqttPublisher(make_settings(broker, tmp_path), STATUS_INFO) as publisher:
        assert publisher.wait_connected(5)
        before = [make_event(i) for i in range(10)]
        for event in before:
            publisher.publish_event(event)
        assert collector.wait(has_ids(topic, set(ids_of(before))))
        broker.stop()
        during = [make_event(100 + i) for i in range(20)]
        for event in during:
            publisher.publish_event(event)
        time.sleep(1.5)
        assert not publisher.connected
        stats = publisher.stats()
        assert (
            stats.pending >= 20 and stats.inflight <= publisher.settings.max_inflight
        )  # on disk, not in RAM
        broker.start()
        after = [make_event(200 + i) for i in range(10)]
        for event in after:
            publisher.publish_event(event)
        wanted = set(ids_of(before + during + after))
        assert collector.wait(has_ids(topic, wanted), 20), "events lost across the outage"
        assert publisher.stats().reconnects >= 1
    received = collector.payloads(topic)
    assert set(ids_of(received)) == wanted
    for payload in received:
        validate("event", payload)


def test_sigkilled_publisher_delivers_its_spool_after_restart(
    broker: Broker, collector: Collector, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.db"
    topic = "edgeface/door1/events"
    proc = _spawn_publisher(broker.port, spool)
    try:
        sent = [make_event(i) for i in range(5)]
        _feed(proc, sent)
        assert collector.wait(has_ids(topic, set(ids_of(sent))))
        broker.stop()
        stranded = [make_event(100 + i) for i in range(12)]
        _feed(proc, stranded)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    broker.start()
    restarted = _spawn_publisher(broker.port, spool)
    _, err = restarted.communicate("", timeout=30)  # no new input: flush the spool, exit
    assert restarted.returncode == 0, err
    wanted = set(ids_of(sent + stranded))
    assert collector.wait(has_ids(topic, wanted), 10), "spooled events lost after SIGKILL"
    assert set(ids_of(collector.payloads(topic))) == wanted


def test_spool_bound_drops_oldest_while_the_broker_is_down(
    broker: Broker, collector: Collector, tmp_path: Path
) -> None:
    broker.stop()
    settings = make_settings(broker, tmp_path, spool_max_events=5)
    with MqttPublisher(settings, STATUS_INFO) as publisher:
        events = [make_event(i) for i in range(8)]
        for event in events:
            publisher.publish_event(event)
        stats = publisher.stats()
        assert (stats.connected, stats.pending, stats.dropped) == (False, 5, 3)
        broker.start()
        kept = ids_of(events[3:])
        assert collector.wait(has_ids(publisher.topics.events, set(kept)), 15)
    assert ids_of(collector.payloads("edgeface/door1/events")) == kept  # oldest three dropped, order kept


def test_malformed_inbound_messages_do_not_stop_the_loop(
    broker: Broker, collector: Collector, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good: list[dict[str, Any]] = []

    def on_manifest(topic: str, payload: bytes) -> None:
        manifest = json.loads(payload)  # raises on garbage
        if not isinstance(manifest, dict) or "version" not in manifest:
            raise ValueError("manifest without a version")
        good.append(manifest)

    with MqttPublisher(make_settings(broker, tmp_path), STATUS_INFO) as publisher:
        assert publisher.wait_connected(5)
        publisher.subscribe("edgeface/fleet/f1/gallery", on_manifest)
        time.sleep(0.3)
        sender = collector.client
        for bad in (b"\xff\xfe\x00", b"{not json", b"", b"[1, 2]", os.urandom(300_000), b'{"no": "version"}'):
            sender.publish("edgeface/fleet/f1/gallery", bad, qos=1)
        sender.publish("edgeface/fleet/f1/gallery", b'{"version": 7}', qos=1)
        deadline = time.monotonic() + 5
        while not good and time.monotonic() < deadline:
            time.sleep(0.02)
        assert good == [{"version": 7}]
        publisher.unsubscribe("edgeface/fleet/f1/gallery")
        time.sleep(0.3)
        sender.publish("edgeface/fleet/f1/gallery", b'{"version": 8}', qos=1).wait_for_publish(5)
        event = make_event(1)
        publisher.publish_event(event)
        assert collector.wait(has_ids(publisher.topics.events, {event.event_id}))
        assert publisher.connected
    assert good == [{"version": 7}]  # nothing after unsubscribe()
    failures = [r for r in caplog.records if "subscriber callback" in r.getMessage()]
    assert len(failures) == 6 and all(r.levelno == logging.ERROR for r in failures)


def test_retained_gallery_state_metrics_and_status_update(
    broker: Broker, collector: Collector, tmp_path: Path
) -> None:
    with MqttPublisher(make_settings(broker, tmp_path), STATUS_INFO) as publisher:
        assert publisher.wait_connected(5)
        publisher.publish_gallery_state(GalleryState(4, "applied").payload())
        metrics = Metrics(
            device="door1",
            fps=14.8,
            stages={"detect": StageLatency(8.1, 12.3)},
            queues={"frames": 1},
            dropped_frames=2,
            uptime_s=12.0,
            mqtt=publisher.stats().as_dict(),
        )
        assert publisher.publish_metrics(metrics)
        publisher.set_status(StatusInfo("0.1.0", 4, 6, "ghostfacenet", MODEL))
        assert collector.wait(lambda msgs: sum(m.topic.endswith("/status") for m in msgs) >= 2)
        assert collector.wait(lambda msgs: any(m.topic.endswith("/metrics") for m in msgs))
        retained = Collector(broker, ["edgeface/door1/gallery/state", "edgeface/door1/status"])
        try:
            assert retained.wait(lambda msgs: len(msgs) >= 2, 5)
            by_topic = {m.topic: json.loads(m.payload) for m in retained.messages if m.retain}
        finally:
            retained.close()
    validate("gallery_state", by_topic["edgeface/door1/gallery/state"])
    assert by_topic["edgeface/door1/gallery/state"]["version"] == 4
    validate("status", by_topic["edgeface/door1/status"])
    assert by_topic["edgeface/door1/status"]["gallery"] == {"version": 4, "count": 6, "expired": False}
    (received,) = collector.payloads("edgeface/door1/metrics")
    validate("metrics", received)
    assert received["mqtt"]["pending"] == 0


def test_mqtt5_events_carry_a_json_content_type(broker: Broker, tmp_path: Path) -> None:
    v5 = Collector(broker, ["edgeface/door1/events"], protocol=paho.MQTTv5)
    try:
        with MqttPublisher(make_settings(broker, tmp_path, protocol="5"), STATUS_INFO) as publisher:
            assert publisher.wait_connected(5)
            event = make_event(1)
            publisher.publish_event(event)
            assert v5.wait(lambda msgs: bool(msgs))
        message = v5.messages[0]
        validate("event", json.loads(message.payload))
        assert message.properties.ContentType == "application/json"
    finally:
        v5.close()


def test_an_event_that_cannot_be_encoded_is_dropped_and_logged_never_raised(
    broker: Broker, tmp_path: Path, caplog
) -> None:
    collector = Collector(broker, ["edgeface/door1/events"])
    try:
        with MqttPublisher(make_settings(broker, tmp_path), STATUS_INFO) as publisher:
            assert publisher.wait_connected(5)
            publisher.publish_event(make_event(1, name="\ud800"))  # a lone surrogate: not UTF-8 encodable
            good = make_event(2)
            publisher.publish_event(good)
            assert collector.wait(lambda m: len(m) >= 1)
            publisher.set_status(
                StatusInfo("0.1.0", 3, 5, "ghost\ud800", MODEL, decision={"threshold": float("nan")})
            )
            assert publisher.failure is None and publisher.stats().pending in (0, 1)
        assert ids_of(collector.payloads("edgeface/door1/events")) == [good.event_id]
    finally:
        collector.close()
    assert "dropped, it cannot be encoded" in caplog.text
    assert "status cannot be encoded" in caplog.text
