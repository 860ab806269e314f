"""Home Assistant end to end: the real daemon (separate process) on emulated frames of real faces, a real
mosquitto, a fleet gallery published by the server CLI, and `edgeface gallery remove` on the door itself.

One run of the door shows: the retained discovery of the device, one presence entity per person, the visitor
event and the diagnostics; presence on for a recognised person and off after the (short) timeout; the
entities of a person removed by a fleet delta and of one removed locally (CLI + SIGHUP) cleared; discovery
again after HA's retained `online`; and no snapshot (they are off by default).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.demo.scenario import Scenario, build_scenario
from edgeface.vision.detect import FaceDetector
from tests.conftest import Broker
from tests.event_schema import validate
from tests.factories import Watcher, connect, retained, wait_for

CHILD = Path(__file__).with_name("daemon_damage_child.py")
DEVICE, NODE = "ha-door", "edgeface_ha-door"
TIMEOUT_S = 2.0  # presence timeout of the door under test


def people_folder(root: Path, enrolment: dict[str, list[Path]], ids: list[str]) -> Path:
    for identity in ids:
        (root / identity).mkdir(parents=True)
        for photo in enrolment[identity]:
            (root / identity / photo.name).symlink_to(photo)
    return root


def write_config(path: Path, state: Path, port: int, public_key: Path) -> Path:
    path.write_text(
        f'[device]\nid = "{DEVICE}"\nstate_dir = "{state}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\nha_discovery = true\n'
        f"[homeassistant]\npresence_timeout_s = {TIMEOUT_S}\n"
        f'[sync]\nenabled = true\npublic_key = "{public_key}"\n'
        "[metrics]\ninterval_s = 1\n"
    )
    return path


def person_config(identity: str) -> str:
    return f"homeassistant/binary_sensor/{NODE}/person_{identity}/config"


def configs(broker: Broker) -> dict[str, dict]:
    return {t: json.loads(p) for t, p in retained(broker, f"homeassistant/+/{NODE}/+/config").items()}


def build(tmp: Path, folders: Path, version: int, base: Path | None = None) -> Path:
    bundle = tmp / f"v{version}.bundle"
    extra = ["--base", str(base)] if base else []
    assert main(["gallery", "build", "--folders", str(folders), "--fleet", "default", "--version", str(version),
                 "--largest-face", "--key", str(tmp / "fleet.pem"), "--out", str(bundle), *extra]) == 0  # fmt: skip
    return bundle


def publish(port: int, bundle: Path, full: Path | None = None) -> None:
    extra = ["--full", str(full)] if full else []
    assert main(["gallery", "publish", "--broker", f"127.0.0.1:{port}", "--fleet", "default", *extra,
                 str(bundle)]) == 0  # fmt: skip


@pytest.fixture(scope="module")
def scenario(faces5: Path, models_dir: Path) -> Scenario:
    return build_scenario(faces5, FaceDetector(models_dir), strangers=1, shown_per_person=1)


def test_home_assistant_follows_the_door_end_to_end(
    scenario: Scenario, broker: Broker, tmp_path: Path, faces5: Path
) -> None:
    enrolled = sorted(scenario.enrolment)
    assert len(enrolled) >= 3
    fleet_removed, local_removed = enrolled[0], enrolled[1]
    assert main(["gallery", "keygen", "--private", str(tmp_path / "fleet.pem"),
                 "--public", str(tmp_path / "fleet.pub")]) == 0  # fmt: skip
    v1 = build(tmp_path, people_folder(tmp_path / "v1", scenario.enrolment, enrolled), 1)
    v2 = build(tmp_path, people_folder(tmp_path / "v2", scenario.enrolment, enrolled[1:]), 2, base=v1)
    full_v2 = build(tmp_path, tmp_path / "v2", 2)
    publish(broker.port, v1)
    state = tmp_path / "state"
    config = write_config(tmp_path / "edgeface.toml", state, broker.port, tmp_path / "fleet.pub")
    watcher = Watcher(broker, [f"homeassistant/+/{NODE}/+/config", f"edgeface/{DEVICE}/presence/+",
                               f"edgeface/{DEVICE}/snapshot"])  # fmt: skip
    log = tmp_path / "daemon.log"
    with open(log, "ab") as out:
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(config), str(faces5), "10"],
            stdout=out, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
        )  # fmt: skip
    try:
        _discovery_is_retained(broker, enrolled, log)
        _presence_on_then_off(watcher, enrolled, log)
        publish(broker.port, v2, full=full_v2)  # fleet delta v1 -> v2 without `fleet_removed`
        _entities_removed(broker, watcher, fleet_removed, log)
        gallery = state / "gallery"
        assert main(["gallery", "remove", "--gallery", str(gallery), "--id", local_removed]) == 0
        child.send_signal(signal.SIGHUP)
        _entities_removed(broker, watcher, local_removed, log)
        _discovery_again_on_ha_birth(broker, watcher)
        assert watcher.on(f"edgeface/{DEVICE}/snapshot") == []  # off by default: nothing, ever
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:  # the daemon first: nothing that fails below may leave it running
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        watcher.close()


def _discovery_is_retained(broker: Broker, enrolled: list[str], log: Path) -> None:
    wanted = {person_config(i) for i in enrolled}
    try:
        wait_for(lambda: wanted <= set(configs(broker)), 120, "one retained presence config per person")
    except AssertionError:
        raise AssertionError(log.read_text()[-3000:]) from None
    found = configs(broker)
    for config in found.values():
        validate("ha_discovery", config)
        assert config["device"]["identifiers"] == [NODE]
    assert {t for t in found if "/binary_sensor/" in t} == wanted
    assert f"homeassistant/event/{NODE}/visitor/config" in found
    diagnostics = {t.split("/")[3] for t, c in found.items() if c.get("entity_category") == "diagnostic"}
    assert diagnostics == {"gallery_version", "gallery_size", "threshold", "threshold_source", "model", "fps",
                           "dropped_frames", "spool_depth", "incidents"}  # fmt: skip
    status = json.loads(retained(broker, f"edgeface/{DEVICE}/status")[f"edgeface/{DEVICE}/status"])
    assert status["state"] == "online" and status["gallery"]["count"] == len(enrolled)


def _presence_on_then_off(watcher: Watcher, enrolled: list[str], log: Path) -> None:
    topics = {i: f"edgeface/{DEVICE}/presence/{i}" for i in enrolled}

    def went_on_and_off() -> bool:
        return any(b"ON" in watcher.on(t) and watcher.on(t)[-1] == b"OFF" and watcher.on(t).index(b"ON") > 0
                   for t in topics.values())  # fmt: skip

    try:
        wait_for(went_on_and_off, 120, "a recognised person's presence on, then off after the timeout")
    except AssertionError:
        raise AssertionError(log.read_text()[-3000:]) from None
    assert any(b"ON" in watcher.on(t) for t in topics.values())


def _entities_removed(broker: Broker, watcher: Watcher, identity: str, log: Path) -> None:
    topic = person_config(identity)
    try:
        wait_for(lambda: watcher.on(topic)[-1:] == [b""], 60, f"an empty retained config for {identity}")
    except AssertionError:
        raise AssertionError(log.read_text()[-3000:]) from None
    assert topic not in configs(broker)
    assert f"edgeface/{DEVICE}/presence/{identity}" not in retained(broker, f"edgeface/{DEVICE}/presence/+")


def _discovery_again_on_ha_birth(broker: Broker, watcher: Watcher) -> None:
    visitor = f"homeassistant/event/{NODE}/visitor/config"
    before = len(watcher.on(visitor))
    client = connect(broker.host, broker.port)
    try:
        client.publish("homeassistant/status", b"online", qos=1, retain=True).wait_for_publish(5)
        wait_for(lambda: len(watcher.on(visitor)) > before, 10, "discovery again after HA's online")
    finally:
        client.disconnect()
        client.loop_stop()
    time.sleep(0.2)
