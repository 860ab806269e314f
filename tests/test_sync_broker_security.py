"""The documented fleet broker config (systemd/mosquitto-fleet.conf + .acl) on a real mosquitto.

TLS only, per-device usernames/passwords, and an ACL: a device publishes only under its own id and reads only
its own fleet's gallery; the fleet server publishes galleries and reads device state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edgeface.cli import main
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.server.build import build_bundle
from edgeface.sync.apply import DevicePolicy
from edgeface.sync.client import GallerySyncClient
from edgeface.sync.mqtt import BrokerOptions, PahoTransport, make_client
from edgeface.sync.settings import SyncClientSettings
from edgeface.sync.updater import IndexUpdater
from tests.conftest import ROOT, Broker, free_port
from tests.factories import MODEL, Keys, go_live, make_gallery, make_keys, make_pki, wait_for

pytestmark = pytest.mark.broker
USERS = {"fleet-server": "s3rver-pw", "door1": "pw-door1", "door2": "pw-door2", "door3": "pw-door3"}


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[tuple[Broker, dict[str, Path]]]:
    pki = make_pki(tmp_path)
    passwd = tmp_path / "edgeface.passwd"
    for user, password in USERS.items():
        create = ["-c"] if not passwd.exists() else []
        subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), user, password], check=True)
    passwd.chmod(0o644)
    acl = tmp_path / "edgeface.acl"
    shutil.copy(ROOT / "systemd" / "mosquitto-fleet.acl", acl)
    acl.chmod(0o644)
    port = free_port()
    text = (ROOT / "systemd" / "mosquitto-fleet.conf").read_text()
    for old, new in {
        "/etc/mosquitto/edgeface.passwd": str(passwd),
        "/etc/mosquitto/edgeface.acl": str(acl),
        "/var/lib/mosquitto/": f"{tmp_path}/",
        "/etc/mosquitto/certs/ca.pem": str(pki["ca"]),
        "/etc/mosquitto/certs/server.pem": str(pki["server_cert"]),
        "/etc/mosquitto/certs/server.key": str(pki["server_key"]),
        "listener 8883": f"listener {port} 127.0.0.1",
    }.items():
        assert old in text, f"documented config lost {old!r}"
        text = text.replace(old, new)
    config = tmp_path / "mosquitto.conf"
    config.write_text(text + ("user root\n" if os.geteuid() == 0 else ""))
    broker = Broker("127.0.0.1", port, None, config)
    broker.start()
    try:
        yield broker, pki
    finally:
        broker.stop()


def _options(
    broker: Broker, pki: dict[str, Path], user: str | None, password: str | None = None
) -> BrokerOptions:
    return BrokerOptions(
        broker.host, broker.port, user or "", pki["ca"], None, None, user, password or USERS.get(user or "")
    )


def _connect(options: BrokerOptions, timeout: float = 3.0) -> mqtt.Client | None:
    client = make_client(options)
    client.connect(options.host, options.port)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not client.is_connected():
        time.sleep(0.02)
    if client.is_connected():
        return client
    client.loop_stop()
    return None


class Listener:
    def __init__(self, client: mqtt.Client, topic: str) -> None:
        self.client = client
        self.got: list[tuple[str, bytes]] = []
        client.message_callback_add(topic, lambda c, u, m: self.got.append((m.topic, bytes(m.payload))))
        client.subscribe(topic, qos=1)
        time.sleep(0.3)

    def topics(self) -> set[str]:
        return {t for t, _ in self.got}


def test_anonymous_wrong_password_and_plaintext_are_refused(secure) -> None:
    broker, pki = secure
    assert _connect(_options(broker, pki, None), 1.5) is None
    assert _connect(_options(broker, pki, "door1", "wrong"), 1.5) is None
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    plain.username_pw_set("door1", USERS["door1"])
    try:
        plain.connect(broker.host, broker.port)
        plain.loop_start()
        time.sleep(1.0)
        connected = plain.is_connected()
    except OSError:
        connected = False
    finally:
        plain.loop_stop()
    assert not connected, "a plaintext MQTT connection to the TLS listener was accepted"


def test_device_publishes_only_under_its_own_id(secure) -> None:
    broker, pki = secure
    server = _connect(_options(broker, pki, "fleet-server"))
    door1 = _connect(_options(broker, pki, "door1"))
    assert server is not None and door1 is not None
    watch = Listener(server, "edgeface/#")
    for topic in ("edgeface/door1/status", "edgeface/door2/status", "edgeface/fleet/lobby/gallery"):
        door1.publish(topic, b"{}", qos=1).wait_for_publish(3)
    time.sleep(0.5)
    assert watch.topics() == {"edgeface/door1/status"}
    for client in (server, door1):
        client.disconnect()
        client.loop_stop()


def test_a_door_writes_home_assistant_configs_only_under_its_own_node(secure) -> None:
    broker, pki = secure
    door1 = _connect(_options(broker, pki, "door1"))
    assert door1 is not None
    watch = Listener(door1, "homeassistant/#")  # door1 may read its own node back (to clear stale configs)
    for topic in ("homeassistant/binary_sensor/edgeface_door1/person_p1/config",
                  "homeassistant/binary_sensor/edgeface_door2/person_p1/config",
                  "homeassistant/status", "homeassistant/sensor/other/config"):  # fmt: skip
        door1.publish(topic, b"{}", qos=1).wait_for_publish(3)
    time.sleep(0.5)
    assert watch.topics() == {"homeassistant/binary_sensor/edgeface_door1/person_p1/config"}
    door1.disconnect()
    door1.loop_stop()


def test_device_reads_only_its_fleets_gallery(secure) -> None:
    broker, pki = secure
    server = _connect(_options(broker, pki, "fleet-server"))
    door1 = _connect(_options(broker, pki, "door1"))
    door3 = _connect(_options(broker, pki, "door3"))
    assert server and door1 and door3
    lobby, garage = Listener(door1, "edgeface/fleet/#"), Listener(door3, "edgeface/fleet/#")
    spy = Listener(door1, "edgeface/door2/#")
    for topic in ("edgeface/fleet/lobby/gallery", "edgeface/fleet/garage/gallery", "edgeface/door2/status"):
        server.publish(topic, b"x", qos=1).wait_for_publish(3)
    time.sleep(0.5)
    assert lobby.topics() <= {"edgeface/fleet/lobby/gallery"} and garage.topics() == {
        "edgeface/fleet/garage/gallery"
    }
    assert "edgeface/fleet/lobby/gallery" in lobby.topics() and not spy.got
    for client in (server, door1, door3):
        client.disconnect()
        client.loop_stop()


def test_signed_gallery_flows_over_tls_with_acl(secure, tmp_path: Path) -> None:
    broker, pki = secure
    keys: Keys = make_keys(tmp_path / "keys")
    store = GalleryStore(tmp_path / "door1")
    live = go_live(Gallery.empty(128, MODEL))
    sync = GallerySyncClient(
        SyncClientSettings(DevicePolicy("lobby", MODEL), "door1"),
        keys.public,
        store,
        IndexUpdater(live).apply,
    )
    client = make_client(_options(broker, pki, "door1"))
    PahoTransport.attach_to(client, sync)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        bundle = tmp_path / "v1.bundle"
        bundle.write_bytes(build_bundle(make_gallery(30), fleet="lobby", version=1, key=keys.private))
        credentials = tmp_path / "server.cred"
        credentials.write_text(f"fleet-server:{USERS['fleet-server']}\n")
        credentials.chmod(0o600)
        args = ["gallery", "publish", "--broker", f"{broker.host}:{broker.port}", "--tls-ca", str(pki["ca"])]
        args += ["--credentials", str(credentials), "--fleet", "lobby", "--state-wait", "0.3", str(bundle)]
        assert main(args) == 0
        wait_for(lambda: live.current.version == 1, 5, "gallery applied over TLS")
        server = _connect(_options(broker, pki, "fleet-server"))
        assert server is not None
        state = Listener(server, "edgeface/door1/gallery/state")
        wait_for(lambda: bool(state.got), 3, "retained state readable by the server")
        assert json.loads(state.got[0][1])["status"] == "applied"
        server.disconnect()
        server.loop_stop()
    finally:
        client.disconnect()
        client.loop_stop()
        sync.close()
