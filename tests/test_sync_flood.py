"""Junk announcements are not echoed back amplified (item 11): bounded reasons, rate-limited rejection log
lines, and retained state published only on change and at a bounded rate. Real mosquitto."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from edgeface.sync.throttle import LogLimiter, StateThrottle
from tests.factories import FLEET, PREFIX, Keys, connect, make_keys, start_device, wait_for

pytestmark = pytest.mark.broker
GALLERY_TOPIC = f"{PREFIX}/fleet/{FLEET}/gallery"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


class StateWatcher:
    """Counts every `gallery/state` message the device publishes (a dashboard's view)."""

    def __init__(self, broker, topic: str) -> None:
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        self.client = connect(broker.host, broker.port)
        self.client.on_message = self._on_message
        self.client.subscribe(topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.payloads.append(bytes(message.payload))

    def count(self) -> int:
        with self._lock:
            return len(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _flood(broker, payloads: list[bytes]) -> None:
    client = connect(broker.host, broker.port)
    infos = [client.publish(GALLERY_TOPIC, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
    client.disconnect()
    client.loop_stop()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "edgeface.sync.client" and r.levelno >= logging.WARNING]


def test_a_3_mb_bogus_field_is_not_echoed(broker, tmp_path: Path, keys: Keys, caplog) -> None:
    device = start_device(broker, tmp_path, keys)
    watcher = StateWatcher(broker, device.sync.config.state_topic)
    try:
        caplog.set_level(logging.WARNING, logger="edgeface.sync.client")
        field = "x\n\x1b[2J" + "A" * 3_000_000
        bogus = json.dumps({"format": "edgeface-announce/1", "payload": {"size": field}}).encode()
        _flood(broker, [bogus])
        wait_for(lambda: device.sync.last_state.status == "rejected", 5, "rejection")
        wait_for(lambda: watcher.count() >= 2, 5, "rejected state published")
        assert max(len(p) for p in watcher.payloads) < 1000
        reason = device.sync.last_state.reason
        assert len(reason) < 300 and "\n" not in reason and "\x1b" not in reason
        lines = [r.getMessage() for r in _warnings(caplog)]
        assert lines and all(len(line) < 400 and "\n" not in line and "\x1b" not in line for line in lines)
    finally:
        watcher.close()
        device.close()


def test_a_flood_of_junk_is_coalesced(broker, tmp_path: Path, keys: Keys, caplog) -> None:
    device = start_device(broker, tmp_path, keys)
    watcher = StateWatcher(broker, device.sync.config.state_topic)
    try:
        wait_for(lambda: watcher.count() >= 1, 5, "initial retained state")
        caplog.set_level(logging.WARNING, logger="edgeface.sync.client")
        started = time.monotonic()
        _flood(broker, [b"same junk"] * 500 + [f"junk {n}".encode() for n in range(2000)])
        wait_for(lambda: (device.sync.last_state.reason or "").startswith("announcement_invalid"), 10, "junk")
        elapsed = time.monotonic() - started
        time.sleep(1.5)  # let the trailing coalesced publish happen
        published = watcher.count() - 1
        allowed = 5 + int(time.monotonic() - started) + 2  # a burst of 5, then 1 per s (the default)
        assert 1 <= published <= allowed, (
            f"{published} state publishes for 2500 junk messages in {elapsed:.1f} s"
        )
        assert json.loads(watcher.payloads[-1])["status"] == "rejected"
        warnings = _warnings(caplog)
        assert len(warnings) <= 10 + 1, f"{len(warnings)} WARNING lines for 2500 junk messages"
    finally:
        watcher.close()
        device.close()


def test_log_limiter_reports_what_it_suppressed(caplog) -> None:
    now = [0.0]
    limiter = LogLimiter(
        logging.getLogger("edgeface.test.limit"), per_window=3, window_s=60, clock=lambda: now[0]
    )
    caplog.set_level(logging.WARNING, logger="edgeface.test.limit")
    logged = [limiter.log("rejected %d", n) for n in range(50)]
    assert logged.count(True) == 3
    now[0] = 61.0
    assert limiter.log("rejected again")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == ["rejected 0", "rejected 1", "rejected 2"]
    assert "suppressed 47 similar" in messages[3] and messages[4] == "rejected again"
    limiter.close()


def test_state_throttle_skips_repeats_and_keeps_the_newest() -> None:
    sent: list[dict] = []
    throttle = StateThrottle(sent.append, burst=2, interval_s=0.2)
    throttle.offer({"status": "applied", "ts": "1"})
    throttle.offer({"status": "applied", "ts": "2"})  # same state, newer timestamp: not republished
    assert len(sent) == 1
    for n in range(100):
        throttle.offer({"status": "rejected", "reason": f"r{n}", "ts": str(n)})
    assert len(sent) == 2
    wait_for(lambda: len(sent) == 3, 2, "trailing publish")
    assert sent[-1]["reason"] == "r99"
    throttle.close()
