"""The real daemon (`edgeface run`, as systemd starts it) under its signals, on a real mosquitto
(docs/design.md §8).

SIGTERM: exits within seconds, every spooled event delivered, the retained status says `offline` and the
on-disk spool is empty. SIGHUP: a changed `match.threshold` in the config file decides the next events.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgeface.identity.gallery import GalleryStore
from edgeface.mqtt.spool import Spool
from edgeface.mqtt.topics import EVENTS, DeviceTopics, every_device
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from tests.conftest import Broker
from tests.event_schema import validate
from tests.factories import make_gallery, read_retained

pytestmark = pytest.mark.broker

DEVICE = "signal-door"
EVENT_LINE = re.compile(r"event ([0-9a-f-]{36}) spooled")
RUN = "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"


def write_config(path: Path, state: Path, faces: Path, port: int, threshold: float) -> None:
    path.write_text(
        f"""[device]
id = "{DEVICE}"
state_dir = {json.dumps(str(state))}

[camera]
kind = "emulated"
faces = {json.dumps(str(faces))}
fps = 10.0
loop = true

[mqtt]
host = "127.0.0.1"
port = {port}

[match]
threshold = {threshold}
"""
    )


class Events:
    """Every recognition event on the broker, in arrival order."""

    def __init__(self, port: int) -> None:
        self.payloads: list[dict] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="signals-viewer")
        self.client.on_connect = lambda c, *_: c.subscribe(every_device("edgeface", EVENTS), qos=1)
        self.client.on_message = lambda c, u, m: self._add(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _add(self, payload: dict) -> None:
        with self._lock:
            self.payloads.append(payload)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.payloads)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(
    what: str,
    predicate: Callable[[], bool],
    timeout: float,
    log: Path,
    process: subprocess.Popen | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        died = process is not None and process.poll() is not None
        if died or time.monotonic() > deadline:
            reason = "the daemon exited" if died else "timed out"
            raise AssertionError(f"{reason} waiting for {what}; daemon log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def daemon_setup(tmp_path: Path, faces5: Path, models_dir: Path, broker: Broker):
    """(config path, state dir, log path, start(threshold) -> Popen): a daemon with an on-disk gallery."""
    card = json.loads((models_dir / DEFAULT_EMBEDDER_CARD).read_text())
    state = tmp_path / "state"
    # Random identities: every face is `unknown`, and each event still carries the threshold it used.
    GalleryStore(state / "gallery").save(make_gallery(3, dim=card["output"]["dim"], model=card["sha256"]))
    config, log = tmp_path / "edgeface.toml", tmp_path / "daemon.log"
    processes: list[subprocess.Popen] = []

    def start(threshold: float) -> subprocess.Popen:
        write_config(config, state, faces5, broker.port, threshold)
        with open(log, "ab") as handle:
            process = subprocess.Popen(
                [sys.executable, "-c", RUN, "run", "--config", str(config)],
                stdout=handle, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
            )  # fmt: skip
        processes.append(process)
        return process

    yield config, state, log, start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def spooled_ids(log: Path) -> list[str]:
    return EVENT_LINE.findall(log.read_text())


def test_sigterm_flushes_the_spool_and_leaves_offline_retained(daemon_setup, broker: Broker) -> None:
    _, state, log, start = daemon_setup
    events = Events(broker.port)
    try:
        process = start(threshold=0.5)
        wait_until("two spooled events", lambda: len(spooled_ids(log)) >= 2, 120, log, process)
        status_topic = DeviceTopics("edgeface", DEVICE).status
        assert read_retained(broker, status_topic)["state"] == "online"
        process.send_signal(signal.SIGTERM)
        # Within the unit's TimeoutStopSec=20, after which systemd would kill it (docs/design.md §8).
        assert process.wait(timeout=20) == 0, log.read_text()[-3000:]
        spooled = set(spooled_ids(log))
        wait_until(
            "every spooled event", lambda: spooled <= {e["event_id"] for e in events.snapshot()}, 10, log
        )
    finally:
        events.close()
    status = read_retained(broker, status_topic)
    validate("status", status)
    assert status["state"] == "offline"
    spool_file = state / "spool.sqlite3"
    assert spool_file.is_file(), "the daemon spools events on disk"
    with Spool(spool_file, max_events=100_000) as spool:
        assert len(spool) == 0, f"{len(spool)} events left in the spool after SIGTERM"


def test_sighup_applies_a_changed_threshold(daemon_setup, broker: Broker, faces5: Path) -> None:
    config, state, log, start = daemon_setup
    before, after = 0.9, 0.35
    events = Events(broker.port)
    try:
        process = start(threshold=before)
        wait_until("a first event", lambda: len(events.snapshot()) >= 1, 120, log, process)
        write_config(config, state, faces5, broker.port, after)
        process.send_signal(signal.SIGHUP)
        wait_until("the reload", lambda: "config reloaded" in log.read_text(), 30, log, process)
        reloaded_at = len(events.snapshot())
        wait_until(
            "an event decided with the new threshold",
            lambda: any(e["threshold"] == after for e in events.snapshot()[reloaded_at:]),
            120,
            log,
            process,
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        events.close()
    thresholds = [e["threshold"] for e in events.snapshot()]
    assert thresholds[0] == before
    assert set(thresholds) == {before, after}, thresholds
    first_new = thresholds.index(after)
    assert all(t == after for t in thresholds[first_new:]), (
        f"the old threshold decided after reload: {thresholds}"
    )
    assert f"threshold {after:.4f} (config" in log.read_text()
