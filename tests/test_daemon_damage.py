"""Issue 13 at daemon level: the real daemon process, a real mosquitto, emulated frames of real faces.

One run starts on a damaged spool and a current gallery with a flipped bit, then gets a signed bundle of
the wrong `dim`, then a SIGHUP while the gallery on disk is bad. A second run fills its (tmpfs) disk. After
each, the daemon must go on publishing correct match events for enrolled faces, and its retained `status`
must say what happened.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from edgeface.demo.scenario import build_scenario
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.mqtt.spool import Spool
from edgeface.server.build import build_bundle
from edgeface.sync.bundle import unpack_bundle
from edgeface.sync.chunks import announcement_bytes, split_chunks
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.detect import FaceDetector
from edgeface.vision.embed import Embedder
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.landmarks import LandmarkRefiner
from edgeface.vision.photos import read_image
from tests.event_schema import validate
from tests.factories import FLEET, damage_page, make_keys, raw_publish

CHILD = Path(__file__).with_name("daemon_damage_child.py")
DEVICE = "damage-door"
FPS = 10.0
V1, V2, V3 = "000000000001", "000000000002", "000000000003"

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def template(tmp_path_factory, faces5: Path, models_dir: Path) -> tuple[Path, set[str], Gallery]:
    """A gallery store holding versions 1, 2 and 3 (same people) of the scenario's enrolled identities."""
    encoder = FaceEncoder(FaceDetector(models_dir), Embedder(models_dir / DEFAULT_EMBEDDER_CARD),
                          LandmarkRefiner(models_dir))  # fmt: skip
    try:
        scenario = build_scenario(faces5, encoder.detector)
        gallery = Gallery.empty(encoder.embedder.dim, encoder.embedder.sha256)
        for identity, photos in scenario.enrolment.items():
            embeddings = np.stack([encoder.encode_largest(read_image(p), str(p)).embedding for p in photos])
            gallery = gallery.enroll(identity, identity, embeddings)
    finally:
        encoder.close()
    root = tmp_path_factory.mktemp("damage-template") / "gallery"
    store = GalleryStore(root, keep_versions=3)
    for version in (1, 2, 3):
        store.save(gallery.with_version(version))
    return root, set(scenario.enrolment), gallery


class Watcher:
    """Everything the device publishes: events, metrics, and its retained status and gallery state."""

    def __init__(self, port: int) -> None:
        self.events: list[dict] = []
        self.metrics: list[dict] = []
        self.retained: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="damage-watcher")
        self.client.on_connect = lambda c, *_: c.subscribe(f"edgeface/{DEVICE}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        kind = message.topic.removeprefix(f"edgeface/{DEVICE}/")
        payload = json.loads(message.payload)
        with self._lock:
            if kind == "events":
                self.events.append(payload)
            elif kind == "metrics":
                self.metrics.append(payload)
            else:
                self.retained[kind] = payload

    def status(self) -> dict:
        with self._lock:
            return dict(self.retained.get("status", {}))

    def incidents(self, kind: str) -> list[dict]:
        return [i for i in self.status().get("incidents", []) if i["kind"] == kind]

    def wait(self, predicate: Callable[[], object], timeout: float, what: str, log: Path) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {what} within {timeout} s; status {self.status()}, metrics "
                    f"{self.metrics[-1:]}; daemon log:\n{log.read_text()[-3000:]}"
                )
            time.sleep(0.1)

    def matches_after(self, start: int) -> list[dict]:
        with self._lock:
            return [e for e in self.events[start:] if e["decision"] == "match"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def assert_new_correct_matches(
    watcher: Watcher, start: int, enrolled: set[str], version: int, log: Path, timeout: float = 20
) -> int:
    """Wait for a match published after event number `start`; every new event valid and from `version`."""
    watcher.wait(lambda: watcher.matches_after(start), timeout, "new match event", log)
    with watcher._lock:
        new = watcher.events[start:]
    for event in new:
        validate("event", event)
        assert event["gallery_version"] == version, event
        if event["decision"] == "match":
            assert event["identity"]["id"] in enrolled, event
    return len(watcher.events)


def write_config(path: Path, state: Path, faces: Path, port: int, public_key: Path) -> Path:
    path.write_text(
        f'[device]\nid = "{DEVICE}"\nfleet = "{FLEET}"\nstate_dir = "{state}"\n'
        f'[camera]\nkind = "emulated"\nname = "door"\nfaces = "{faces}"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        f"[match]\ncooldown_s = 1.0\n[metrics]\ninterval_s = 1.0\n"
        f'[sync]\nenabled = true\npublic_key = "{public_key}"\n'
    )
    return path


@contextlib.contextmanager
def daemon(config: Path, faces: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, str(CHILD), str(config), str(faces), str(FPS)],
            stdout=handle, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[1],
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x04
    path.write_bytes(bytes(data))


def copy_template(template: Path, state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", str(template), str(state / "gallery")], check=True)


def test_damaged_spool_and_gallery_wrong_dim_bundle_and_bad_sighup(
    template, broker, tmp_path: Path, faces5: Path
) -> None:
    gallery_root, enrolled, gallery = template
    state = tmp_path / "state"
    copy_template(gallery_root, state)
    with Spool(state / "spool.sqlite3", 10_000) as spool:  # a spool with pages, then page 2 destroyed
        for i in range(300):
            spool.put("edgeface/elsewhere/events", f"{i:06d}".encode() + b"x" * 400, 1)
    damage_page(state / "spool.sqlite3")
    flip_bit(state / "gallery" / "versions" / V3 / "vectors.npy")  # the current version
    keys = make_keys(tmp_path)
    config = write_config(tmp_path / "edgeface.toml", state, faces5, broker.port, keys.public_path)
    log = tmp_path / "daemon.log"
    watcher = Watcher(broker.port)
    try:
        with daemon(config, faces5, log) as process:
            # 1. started anyway: version 3 set aside, version 2 running, the spool recreated
            seen = assert_new_correct_matches(watcher, 0, enrolled, 2, log, timeout=40)
            status = watcher.status()
            validate("status", {k: v for k, v in status.items() if k != "spool"})
            assert status["gallery"]["version"] == 2
            (aside,) = watcher.incidents("gallery_set_aside")
            assert V3 in aside["detail"] and "sha256" in aside["detail"]
            assert status["spool"]["quarantined_files"] == 1
            assert [p.name[:12] for p in (state / "gallery" / "set-aside").iterdir()] == [V3]

            # 2. a correctly signed bundle whose dim is not the embedder's: refused before commit
            wrong = Gallery(gallery.ids, gallery.names, gallery.samples,
                            np.tile(gallery.vectors, (1, 4)) / 2.0, gallery.model_sha256, 4)  # fmt: skip
            parts = unpack_bundle(
                build_bundle(wrong, fleet=FLEET, version=4, key=keys.private, chunk_bytes=4096)
            )
            chunks = split_chunks(parts.payload, 4096)
            announcement = announcement_bytes(parts.manifest, parts.signature, parts.payload, chunks)
            raw_publish(broker, 4, announcement, dict(enumerate(chunks)))
            watcher.wait(lambda: watcher.incidents("bundle_rejected"), 10, "bundle_rejected in status", log)
            assert "dim_mismatch" in watcher.incidents("bundle_rejected")[0]["detail"]
            watcher.wait(lambda: watcher.retained.get("gallery/state", {}).get("status") == "rejected", 5,
                         "rejected gallery state", log)  # fmt: skip
            assert watcher.retained["gallery/state"]["reason"].startswith("dim_mismatch:")
            assert not (state / "gallery" / "versions" / "000000000004").exists()
            seen = assert_new_correct_matches(watcher, seen, enrolled, 2, log)

            # 3. SIGHUP with the current version damaged: falls back to version 1
            flip_bit(state / "gallery" / "versions" / V2 / "vectors.npy")
            process.send_signal(signal.SIGHUP)
            watcher.wait(lambda: watcher.status()["gallery"]["version"] == 1, 10, "fallback on SIGHUP", log)
            assert any(V2 in i["detail"] for i in watcher.incidents("gallery_set_aside"))
            with watcher._lock:
                seen = len(watcher.events)  # events decided before the swap may still name version 2
            seen = assert_new_correct_matches(watcher, seen, enrolled, 1, log)

            # 4. SIGHUP while the only stored version is damaged: reload refused, the running gallery kept
            flip_bit(state / "gallery" / "versions" / V1 / "vectors.npy")
            process.send_signal(signal.SIGHUP)
            watcher.wait(lambda: watcher.incidents("reload_refused"), 10, "reload_refused in status", log)
            assert any(V1 in i["detail"] for i in watcher.incidents("gallery_set_aside"))
            assert watcher.status()["gallery"]["version"] == 1
            seen = assert_new_correct_matches(watcher, seen, enrolled, 1, log)
            assert process.poll() is None
            watcher.wait(lambda: watcher.metrics and watcher.metrics[-1].get("incidents", {}).get("reload_refused"),
                         5, "incidents in metrics", log)  # fmt: skip
            counts = watcher.metrics[-1]["incidents"]
            assert counts["gallery_set_aside"] == 3 and counts["bundle_rejected"] >= 1
        assert process.returncode == 0, log.read_text()[-3000:]
    finally:
        watcher.close()
    matched = {e["identity"]["id"] for e in watcher.events if e["decision"] == "match"}
    assert len(matched) >= 2 and matched <= enrolled


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs; needs root or CAP_SYS_ADMIN (the spool tests cover a page-capped file too)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_keeps_recognising_and_says_so(
    template, broker, tmpfs: Path, tmp_path: Path, faces5
) -> None:
    gallery_root, enrolled, _ = template
    state = tmpfs / "state"
    copy_template(gallery_root, state)
    keys = make_keys(tmp_path)
    config = write_config(tmp_path / "edgeface.toml", state, faces5, broker.port, keys.public_path)
    log = tmp_path / "daemon.log"
    watcher = Watcher(broker.port)
    filler = tmpfs / "filler"
    try:
        with daemon(config, faces5, log) as process:
            seen = assert_new_correct_matches(watcher, 0, enrolled, 3, log, timeout=40)
            with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
            seen = assert_new_correct_matches(watcher, seen, enrolled, 3, log)
            seen = assert_new_correct_matches(watcher, seen, enrolled, 3, log)
            watcher.wait(lambda: watcher.status().get("spool", {}).get("mode") == "memory", 10,
                         "spool mode memory in status", log)  # fmt: skip
            filler.unlink()
            # space again: the held events go to disk and the status no longer reports a degraded spool
            watcher.wait(lambda: watcher.status().get("spool", {"mode": "disk"})["mode"] == "disk", 20,
                         "spool back on disk", log)  # fmt: skip
            assert_new_correct_matches(watcher, seen, enrolled, 3, log)
            assert process.poll() is None
            watcher.wait(lambda: watcher.metrics and watcher.metrics[-1]["mqtt"]["spool"]["mode"] == "disk", 5,
                         "metrics spool on disk", log)  # fmt: skip
            assert watcher.metrics[-1]["mqtt"]["spool"]["events_dropped_disk_full"] == 0
        assert process.returncode == 0, log.read_text()[-3000:]
    finally:
        watcher.close()
