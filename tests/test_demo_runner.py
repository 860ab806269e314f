"""Smoke test of `edgeface demo` as `make demo` runs it: the real CLI in a child process, real models, the
demo's own throw-away mosquitto, the emulated door scene of the shared photos.

The scene walks the five people of faces5 past the door one by one (a visit every 3.5 s from 0.5 s); the
last in name order is the stranger. 18 s covers every visit. Each event line must be a valid docs/design.md §6
event, and the summary line must agree with them: every enrolled visitor matched once, the stranger not.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.demo.runner import EventCollector
from edgeface.mqtt.topics import DeviceTopics
from tests.conftest import Broker
from tests.event_schema import validate
from tests.factories import connect, wait_for

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(
    faces5: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict], dict, str, Path]:
    tmp = tmp_path_factory.mktemp("demo")
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        "EDGEFACE_MODELS": str(models_dir),
        "TMPDIR": str(tmp),
    }
    command = "import sys; from edgeface.cli import main; sys.exit(main())"
    run = subprocess.run(
        [sys.executable, "-c", command, "demo", "--faces", str(faces5)],  # until the scene ends
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=600,  # generous: the demo shows the whole scene, however loaded the host
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines and "summary" in lines[-1], run.stdout[-2000:]
    return lines[:-1], lines[-1]["summary"], run.stderr, tmp


def test_every_line_before_the_summary_is_a_valid_event(demo) -> None:
    events, _, _, _ = demo
    assert events
    for event in events:
        validate("event", event)
        assert event["device"] == "demo-door" and event["camera"] == "door"
    assert len({e["event_id"] for e in events}) == len(events)


def test_the_summary_counts_the_printed_events(demo) -> None:
    events, summary, _, _ = demo
    matches = [e for e in events if e["decision"] == "match"]
    assert summary["events"] == len(events)
    assert summary["matches"] == len(matches) and summary["unknowns"] == len(events) - len(matches)
    assert summary["matched_ids"] == sorted(e["identity"]["id"] for e in matches)
    assert all(e["threshold"] == summary["threshold"] for e in events)


def test_every_enrolled_visitor_is_matched_once_and_the_stranger_is_not(demo, faces5: Path) -> None:
    events, summary, stderr, _ = demo
    people = sorted(p.name for p in faces5.iterdir() if p.is_dir())
    assert summary["expected_strangers"] == people[-1:]
    assert summary["expected_matches"] == people[:-1]
    assert summary["matched_ids"] == summary["expected_matches"]  # each once: no repeats, no misses
    assert summary["unknowns"] == 1 and len(events) == len(people)  # one decision per visit
    assert f"enrolled {len(people) - 1} identities, strangers: {people[-1]}" in stderr


def test_the_threshold_is_the_gallerys_own_calibration(demo) -> None:
    _, summary, stderr, _ = demo
    assert summary["threshold_source"] == "gallery"
    assert -1.0 < summary["threshold"] < 1.0
    assert re.search(r"calibrated on the gallery's 4 identities for FPIR 0\.01", stderr)


def test_the_run_reports_its_pace_and_leaves_nothing_behind(demo) -> None:
    _, summary, stderr, tmp = demo
    assert summary["fps"] > 0 and summary["p50_latency_ms"] is not None
    assert summary["p95_latency_ms"] >= summary["p50_latency_ms"]
    assert not list(tmp.glob("edgeface-demo-*")), "the demo's temporary state directory was left behind"
    ports = {int(p) for p in re.findall(r"MQTT: connected to 127\.0\.0\.1:(\d+)", stderr)}
    assert len(ports) == 1
    with pytest.raises(OSError):  # the demo's broker is gone with it
        socket.create_connection(("127.0.0.1", ports.pop()), timeout=0.5).close()


def test_the_viewer_keeps_only_json_objects_as_events(broker: Broker) -> None:
    """A message that is valid JSON but no object (`5`) is not an event: `summarise` reads events by key."""
    collector = EventCollector(broker.port)
    publisher = connect(broker.host, broker.port)
    topic = DeviceTopics("edgeface", "door-1").events
    try:
        wait_for(  # the collector subscribes asynchronously: publish until its subscription is live
            lambda: (
                publisher.publish(topic, b'{"n": 0}', qos=1).wait_for_publish(5) or bool(collector.events)
            ),
            10,
            "the collector's subscription",
        )
        for payload in (b"5", b'"text"', b"[1, 2]", b'{"n": 1}'):
            publisher.publish(topic, payload, qos=1).wait_for_publish(5)
        wait_for(lambda: any(e.get("n") == 1 for e in collector.events), 5, "the last event")
        assert all(isinstance(e, dict) for e in collector.events)
        assert collector.events[-1] == {"n": 1}
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        collector.close()
