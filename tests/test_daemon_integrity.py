"""The real daemon against what issue 22 found: a typo in the broker host, a dying MQTT thread, a SIGHUP after a
NaN edit or with restart-only changes, and a synced gallery expiring under `deny` (real mosquitto, real models)."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edgeface.config import parse_config
from edgeface.daemon.service import Daemon
from edgeface.identity.calibration import Calibration
from edgeface.identity.gallery import GalleryStore
from edgeface.mqtt.topics import DeviceTopics
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.util.timestamps import rfc3339
from tests.conftest import Broker
from tests.event_schema import validate
from tests.factories import FLEET, connect, make_gallery, make_keys, read_retained, wait_for

pytestmark = pytest.mark.broker

DEVICE = "integrity-door"
RUN = "import sys; from edgeface.cli import main; sys.exit(main(sys.argv[1:]))"
CALIBRATION = Calibration(0.93, 0.0, 0.01, 0.009, 0.9, 600, 30, 8, "pairs")


def _card(models_dir: Path) -> dict:
    return json.loads((models_dir / DEFAULT_EMBEDDER_CARD).read_text())  # the embedder the daemon runs


def _toml(state: Path, faces: Path, port: int, device: str = DEVICE, mqtt: str = "") -> str:
    return f"""[device]
id = "{device}"
state_dir = {json.dumps(str(state))}

[camera]
kind = "emulated"
faces = {json.dumps(str(faces))}
fps = 10.0
loop = true

[mqtt]
host = "127.0.0.1"
port = {port}
{mqtt}
"""


def _start(config: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-c", RUN, "run", "--config", str(config)],
            stdout=handle, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
        )  # fmt: skip


def _wait(
    what: str, predicate: Callable[[], bool], timeout: float, log: Path, process: subprocess.Popen
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None or time.monotonic() > deadline:
            reason = "the daemon exited" if process.poll() is not None else "timed out"
            raise AssertionError(f"{reason} waiting for {what}; daemon log:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize(
    ("mqtt", "key"),
    [
        ('host = "broker..lan"', "mqtt.host"),
        (f'host = "{"b" * 64}.lan"', "mqtt.host"),
        (f'client_id = "{"c" * 70_000}"', "mqtt.client_id"),
        ('client_id = "door\\u0000one"', "mqtt.client_id"),
    ],
)
def test_a_broker_setting_the_protocol_cannot_carry_exits_non_zero_within_seconds(
    tmp_path: Path, faces5: Path, broker: Broker, processes: list, mqtt: str, key: str
) -> None:
    config, log = tmp_path / "edgeface.toml", tmp_path / "daemon.log"
    text = _toml(tmp_path / "state", faces5, broker.port, mqtt=mqtt)
    config.write_text(text.replace('host = "127.0.0.1"\n', "") if mqtt.startswith("host") else text)
    processes.append(_start(config, log))
    try:
        code = processes[-1].wait(timeout=60)  # a bound for the test, not a speed claim
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the daemon kept running with {key} it cannot use:\n{log.read_text()[-2000:]}"
        ) from None
    output = log.read_text()
    assert code != 0 and key in output and "Traceback" not in output, output[-2000:]


def test_sighup_after_a_nan_edit_and_restart_only_changes_keeps_the_daemon_running(
    tmp_path: Path, faces5: Path, models_dir: Path, broker: Broker, processes: list
) -> None:
    card = _card(models_dir)
    state, config, log = tmp_path / "state", tmp_path / "edgeface.toml", tmp_path / "daemon.log"
    gallery = replace(make_gallery(3, model=card["sha256"], version=1), calibration=CALIBRATION)
    current = GalleryStore(state / "gallery").save(gallery)
    config.write_text(_toml(state, faces5, broker.port))
    process = _start(config, log)
    processes.append(process)
    _wait("a first event", lambda: "spooled: track" in log.read_text(), 120, log, process)
    raw = (current / "gallery.json").read_text()
    (current / "gallery.json").write_text(raw.replace('"threshold": 0.93', '"threshold": NaN'))
    config.write_text(_toml(state, faces5, broker.port, device="renamed-door", mqtt="keepalive = 45"))
    process.send_signal(signal.SIGHUP)
    _wait("the reload outcome", lambda: "reload refused" in log.read_text(), 30, log, process)
    time.sleep(2.0)
    assert process.poll() is None, f"SIGHUP killed the daemon:\n{log.read_text()[-3000:]}"
    text = log.read_text()
    assert "gallery.json does not match its sha256" in text
    assert (state / "gallery" / "set-aside").is_dir()
    # a valid gallery again: the reload applies, and says which changes wait for a restart
    GalleryStore(state / "gallery").save(replace(gallery, version=2))
    process.send_signal(signal.SIGHUP)
    _wait("a second reload", lambda: "config reloaded" in log.read_text(), 30, log, process)
    text = log.read_text()
    assert "reload: device.id, mqtt.keepalive changed; only a restart applies them" in text, text[-3000:]
    status = read_retained(broker, DeviceTopics("edgeface", DEVICE).status)
    validate("status", status)
    assert status["state"] == "online" and status["gallery"]["version"] == 2
    assert "restart_needed" in {i["kind"] for i in status["incidents"]}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, log.read_text()[-3000:]


class NotifyListener:
    """A stand-in for systemd's notify socket: records every datagram the daemon sends."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="ef-", dir="/tmp")) / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def _daemon_config(tmp_path: Path, faces5: Path, port: int, **sections: dict) -> object:
    return parse_config(
        {
            "device": {"id": DEVICE, "fleet": FLEET, "state_dir": str(tmp_path / "state")},
            "camera": {"kind": "emulated", "faces": str(faces5), "fps": 10.0, "loop": True},
            "mqtt": {"host": "127.0.0.1", "port": port},
            **sections,
        }
    )


def _raise_system_exit(topic: str, payload: bytes) -> None:
    raise SystemExit("a BaseException through paho's callback ends its network thread")


def test_a_daemon_whose_mqtt_thread_dies_stops_vouching_and_exits_non_zero(
    tmp_path: Path, faces5: Path, models_dir: Path, broker: Broker, monkeypatch, caplog
) -> None:
    card = _card(models_dir)
    GalleryStore(tmp_path / "state" / "gallery").save(make_gallery(3, model=card["sha256"]))
    notify = NotifyListener()
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = Daemon(_daemon_config(tmp_path, faces5, broker.port))
    result: dict[str, int] = {}
    runner = threading.Thread(target=lambda: result.setdefault("rc", daemon.run()))
    caplog.set_level(logging.INFO)
    runner.start()
    try:
        wait_for(lambda: any("WATCHDOG=1" in m for _, m in notify.messages), 120, "a first watchdog ping")
        daemon.publisher.subscribe("test/kill", _raise_system_exit)
        wait_for(lambda: daemon.publisher.connected, 10, "the subscription")
        time.sleep(0.5)
        client = connect(broker.host, broker.port)
        client.publish("test/kill", b"x", qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        runner.join(60)
        assert not runner.is_alive(), "the daemon kept running (and vouching) without its MQTT thread"
    finally:
        daemon.request_stop()
        runner.join(30)
        notify.close()
    assert result["rc"] == 1
    assert "MQTT: network thread died: SystemExit" in caplog.text
    assert "exiting so systemd restarts the service" in caplog.text
    failed_at = next(t for t, m in notify.messages if "STATUS=failed" in m)
    assert not [m for t, m in notify.messages if t > failed_at and "WATCHDOG=1" in m]


def test_a_synced_gallery_expiring_under_deny_is_reported(
    tmp_path: Path, faces5: Path, models_dir: Path, broker: Broker, caplog
) -> None:
    card = _card(models_dir)
    keys = make_keys(tmp_path / "keys")
    now = datetime.now(UTC)
    manifest = {"fleet": FLEET, "created": rfc3339(now), "expires": rfc3339(now + timedelta(seconds=4))}
    gallery = replace(make_gallery(3, model=card["sha256"]), manifest=manifest)
    GalleryStore(tmp_path / "state" / "gallery").save(gallery)
    sync = {"enabled": True, "public_key": str(keys.public_path), "expiry_policy": "deny"}
    daemon = Daemon(_daemon_config(tmp_path, faces5, broker.port, sync=sync))
    runner = threading.Thread(target=daemon.run)
    caplog.set_level(logging.INFO)
    runner.start()
    topics = DeviceTopics("edgeface", DEVICE)
    try:
        wait_for(daemon.ready.is_set, 120, "the daemon ready")
        assert read_retained(broker, topics.status)["gallery"]["expired"] is False
        wait_for(lambda: "every visitor is now reported as unknown" in caplog.text, 30, "the expiry log line")
        wait_for(lambda: read_retained(broker, topics.status)["gallery"]["expired"], 10, "expired in status")
        status = read_retained(broker, topics.status)
        validate("status", status)
        assert "gallery_expired" in {i["kind"] for i in status["incidents"]}
        assert read_retained(broker, topics.gallery_state)["expired"] is True
        assert not daemon.sync or not daemon.sync.matching_allowed()
    finally:
        daemon.request_stop()
        runner.join(30)
