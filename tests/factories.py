"""Shared test factories (plain functions and classes; fixtures live in conftest.py).

Detections, frames and textured images; unit vectors, galleries, signing keys and a device's sync side on a
broker (`start_device`), raw MQTT helpers for hostile-publisher tests; a damaged storage page; the MQTT
publisher's settings, a recognition event and a real subscriber (`Collector`); a throw-away TLS PKI.
Holds no tests itself; test modules import what they need (`from tests.factories import ...`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edgeface.demo.localbroker import free_port
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.index import GalleryIndex, IndexSettings
from edgeface.identity.live import GoLive, RuleFor
from edgeface.identity.rule import MatchRule
from edgeface.mqtt.payloads import StatusInfo
from edgeface.mqtt.settings import MqttSettings
from edgeface.mqtt.topics import fleet_gallery, fleet_gallery_chunk
from edgeface.pipeline.events import Event, recognition_event
from edgeface.server.signing import Ed25519PrivateKey, generate_keypair, load_private_key, sign
from edgeface.sync.apply import DevicePolicy
from edgeface.sync.bundle import Bundle
from edgeface.sync.client import GallerySyncClient
from edgeface.sync.manifest import manifest_bytes
from edgeface.sync.mqtt import PahoTransport
from edgeface.sync.settings import SyncClientSettings
from edgeface.sync.signing import Ed25519PublicKey, load_public_key
from edgeface.sync.trust import Trust
from edgeface.sync.updater import IndexUpdater
from edgeface.types import KEYPOINT_NAMES, Detection, Frame, Identity, Match
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.photos import read_image
from tests.conftest import Broker

MODEL = "ab" * 32
FLEET = "lobby"
PREFIX = "edgeface"


def rule_of(threshold: float = 0.5, margin: float = 0.0) -> MatchRule:
    """A decision rule set by the test."""
    return MatchRule(threshold, margin, "config", "set by the test")


def fixed_rule(threshold: float = 0.5, margin: float = 0.0) -> RuleFor:
    """A decision rule that is the same for every gallery (set by the test)."""
    rule = rule_of(threshold, margin)
    return lambda gallery: rule


def go_live(
    gallery: Gallery, threshold: float = 0.5, margin: float = 0.0, settings: IndexSettings | None = None
) -> GoLive:
    return GoLive(gallery, fixed_rule(threshold, margin), settings)


class ScriptedEncoder:
    """Detects the same faces in every frame; embeds each face as whoever the test says is standing there."""

    def __init__(self, faces: Sequence[Detection], person: np.ndarray) -> None:
        self.detector = self
        self.faces = list(faces)
        self.person = person
        self.seen_shapes: list[tuple[int, ...]] = []
        self.embedded = 0
        self.cropped = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.seen_shapes.append(image.shape)
        return list(self.faces)

    def crop(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        self.cropped += 1
        return np.full((4, 4, 3), self.cropped - 1, np.uint8)  # numbered, so a test can tell them apart

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        self.embedded += len(crops)
        return np.stack([self.person] * len(crops))


# Keypoints of a frontal face as fractions of its box, in KEYPOINT_NAMES order.
FRONTAL = ((0.32, 0.4), (0.68, 0.4), (0.5, 0.6), (0.5, 0.78), (0.05, 0.45), (0.95, 0.45))


def make_detection(x: float, y: float, size: float = 50, score: float = 0.9, yaw: float = 0.0) -> Detection:
    """A square face box at (x, y) with frontal keypoints; `yaw` shifts the nose by that many eye distances."""
    points = np.asarray(FRONTAL[: len(KEYPOINT_NAMES)], np.float32) * size + np.float32([x, y])
    points[KEYPOINT_NAMES.index("nose_tip"), 0] += yaw * 0.36 * size
    return Detection((x, y, size, size), points, score)


def make_frame(ts: float = 0.0, shape: tuple[int, int] = (480, 640), value: int = 0, seq: int = 0) -> Frame:
    """A uniform BGR frame."""
    return Frame(np.full((*shape, 3), value, np.uint8), ts, seq)


def textured(
    value: int = 128, spread: int = 60, shape: tuple[int, int] = (240, 320), seed: int = 0
) -> np.ndarray:
    """A sharp (noisy) BGR image of mean brightness about `value`."""
    noise = np.random.default_rng(seed).integers(-spread, spread + 1, (*shape, 1))
    return np.clip(value + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)


def unit_vectors(n: int, dim: int = 128, seed: int = 0) -> np.ndarray:
    """`n` random L2-normalised float32 rows."""
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def make_gallery(
    n: int, start: int = 0, version: int = 1, dim: int = 128, seed: int = 0, model: str = MODEL
) -> Gallery:
    vectors = unit_vectors(n, dim, seed + start)
    ids = tuple(f"id{i:06d}" for i in range(start, start + n))
    return Gallery(
        ids, tuple(f"Person {i}" for i in range(start, start + n)), (3,) * n, vectors, model, version
    )


@dataclass(frozen=True)
class Keys:
    private_path: Path
    public_path: Path

    @property
    def private(self) -> Ed25519PrivateKey:
        return load_private_key(self.private_path)

    @property
    def public(self) -> Ed25519PublicKey:
        return load_public_key(self.public_path)


def make_keys(directory: Path, name: str = "fleet") -> Keys:
    directory.mkdir(parents=True, exist_ok=True)
    keys = Keys(directory / f"{name}.pem", directory / f"{name}.pub")
    generate_keypair(keys.private_path, keys.public_path)
    return keys


def resigned(
    keys: Keys, parts: Bundle, changes: Mapping[str, object], payload: bytes | memoryview | None = None
) -> Bundle:
    """`parts` with manifest fields replaced by `changes`, signed again with the fleet key (a valid signature
    over a manifest the device must still refuse); `payload` replaces the payload bytes."""
    raw = manifest_bytes(json.loads(parts.manifest) | dict(changes))
    return Bundle(raw, sign(keys.private, raw), parts.payload if payload is None else payload)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> float:
    """Seconds until `predicate()` held; fails the test after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def connect(host: str, port: int, client_id: str = "") -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect(host, port)
    client.loop_start()
    wait_for(client.is_connected, 5, "mqtt connect")
    return client


def raw_publish(broker: Broker, version: int, announcement: bytes | None, chunks: dict[int, bytes]) -> None:
    """Publish (possibly tampered) retained chunks, then the announcement, like a hostile server could."""
    client = connect(broker.host, broker.port)
    infos = [
        client.publish(fleet_gallery_chunk(PREFIX, FLEET, version, n), data, qos=1, retain=True)
        for n, data in chunks.items()
    ]
    if announcement is not None:
        infos.append(client.publish(fleet_gallery(PREFIX, FLEET), announcement, qos=1, retain=True))
    for info in infos:
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def read_retained(broker: Broker, topic: str, timeout: float = 2.0) -> dict | None:
    got: dict[str, bytes] = {}
    client = connect(broker.host, broker.port)
    client.on_message = lambda c, u, m: got.__setitem__("payload", bytes(m.payload))
    client.subscribe(topic, qos=1)
    try:
        wait_for(lambda: "payload" in got, timeout, f"retained message on {topic}")
    finally:
        client.disconnect()
        client.loop_stop()
    return json.loads(got["payload"])


@dataclass
class Device:
    """A device's sync side: store, client, index holder and updater, on a real broker connection."""

    name: str
    store: GalleryStore
    sync: GallerySyncClient
    live: GoLive
    client: mqtt.Client
    galleries: list[Gallery] = field(default_factory=list)

    @property
    def index(self) -> GalleryIndex:
        return self.live.current.index

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.sync.close()


def start_device(
    broker: Broker,
    root: Path,
    keys: Keys,
    name: str = "door1",
    model: str = MODEL,
    trust: Trust | None = None,
    **config: object,
) -> Device:
    store = GalleryStore(root / name)
    initial = store.load() if store.exists() else Gallery.empty(128, model)
    live = go_live(initial)
    updater = IndexUpdater(live)
    galleries: list[Gallery] = []
    lock = threading.Lock()

    def on_gallery(gallery: Gallery) -> None:
        updater.apply(gallery)
        with lock:
            galleries.append(gallery)

    policy_keys = {"expiry_policy", "max_payload", "max_version_jump", "dim"}
    policy = DevicePolicy(FLEET, model, **{k: v for k, v in config.items() if k in policy_keys})  # type: ignore[arg-type]
    rest = {k: v for k, v in config.items() if k not in policy_keys}
    settings = SyncClientSettings(policy, name, PREFIX, **rest)  # type: ignore[arg-type]
    sync = GallerySyncClient(settings, trust or keys.public, store, on_gallery)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    PahoTransport.attach_to(client, sync)
    client.connect(broker.host, broker.port)
    client.loop_start()
    wait_for(client.is_connected, 5, "device connect")
    return Device(name, store, sync, live, client, galleries)


class Watcher:
    """A real subscriber recording every (topic, payload, retain flag) on its filters, in arrival order."""

    def __init__(self, broker: Broker, filters: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._acked: list[int] = []
        self.client = connect(broker.host, broker.port)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda client, userdata, mid, *rest: self._acked.append(mid)
        mids = [self.client.subscribe(topic_filter, qos=1)[1] for topic_filter in filters]
        wait_for(lambda: set(mids) <= set(self._acked), 10, "SUBACK")  # retained messages follow their SUBACK

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [payload for t, payload, _ in self.messages if t == topic]

    def topics(self) -> set[str]:
        with self._lock:
            return {t for t, _, _ in self.messages}

    def count(self) -> int:
        with self._lock:
            return len(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --- Storage damage ---------------------------------------------------------------------------------------


def damage_page(path: Path, random: bool = False) -> None:
    """Overwrite bytes 4096-8191 (page 2: the messages table) in place, as a failing SD card would."""
    with path.open("r+b") as f:
        f.seek(4096)
        f.write(os.urandom(4096) if random else b"\0" * 4096)


# --- MQTT publisher side: settings, events and a real subscriber ------------------------------------------

STATUS_INFO = StatusInfo("0.1.0", 3, 5, "ghostfacenet", MODEL)


class Collector:
    """A real subscriber with a persistent session (it gets what was queued while it was away)."""

    def __init__(self, broker: Broker, topics: list[str], protocol: int = mqtt.MQTTv311, **tls: Any) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            protocol=protocol,
            clean_session=None if v5 else False,
        )
        if tls:
            self.client.tls_set(**tls)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        if v5:
            from paho.mqtt.properties import PacketTypes, Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect(broker.host, broker.port, 30, clean_start=False, properties=props)
        else:
            self.client.connect(broker.host, broker.port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("collector did not subscribe within 5 s")

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait(self, predicate: Callable[[list[mqtt.MQTTMessage]], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def payloads(self, topic: str) -> list[dict[str, Any]]:
        with self._cond:
            return [json.loads(m.payload) for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(broker: Broker, topic_filter: str, settle_s: float = 1.0) -> dict[str, bytes]:
    """What the broker holds retained under `topic_filter` now (non-empty payloads), by topic."""
    watcher = Watcher(broker, [topic_filter])
    try:
        time.sleep(settle_s)
        with watcher._lock:
            return {t: p for t, p, was_retained in watcher.messages if was_retained and p}
    finally:
        watcher.close()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (one row of pixel data follows: decoders allocate first)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (3 * width + 1)))
    )


def make_settings(broker: Broker | None, tmp: Path, **overrides: Any) -> MqttSettings:
    """Publisher settings for device `door1` on `broker` (a free unused port when None), quick reconnects."""
    values: dict[str, Any] = {
        "device": "door1",
        "host": "127.0.0.1",
        "port": broker.port if broker else free_port(),
        "spool_path": tmp / "spool.db",
        "reconnect_min_s": 1,
        "reconnect_max_s": 1,
        "keepalive": 10,
    }
    values.update(overrides)
    return MqttSettings(**values)


def make_event(track: int, name: str | None = "Ada") -> Event:
    """A recognition event of device `door1`: a match of `name`, or `unknown` when None."""
    identity = Identity(f"id-{name}", name) if name else None
    match = Match("match" if name else "unknown", identity, 0.71, 0.2, 0.45)
    return recognition_event(
        device="door1",
        camera="cam0",
        track=track,
        match=match,
        frames=3,
        bbox=(10, 20, 80, 90),
        gallery_version=3,
        model_sha256=MODEL,
        latency_ms=42.5,
    )


def has_ids(topic: str, wanted: set[str]) -> Callable[[list[mqtt.MQTTMessage]], bool]:
    """A `Collector.wait` predicate: every id in `wanted` arrived on `topic`."""
    return lambda msgs: wanted <= {json.loads(m.payload)["event_id"] for m in msgs if m.topic == topic}


# --- TLS: a throw-away PKI for a broker with client certificates ------------------------------------------


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def _issue(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgeface test CA")])
    ca_cert = _issue("edgeface test CA", ca_key, ca_name, ca_key, ca=True)
    files = {"ca": directory / "ca.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    for role, extra in (("server", san), ("client", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"edgeface-{role}", key, ca_name, ca_key, san=extra)
        files[f"{role}_cert"] = directory / f"{role}.pem"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"] = _write_key(key, directory / f"{role}.key")
    for path in files.values():
        path.chmod(0o644)  # mosquitto may drop to its own user
    return files


def people_folder(root: Path, enrolment: dict[str, list[Path]], ids: list[str]) -> Path:
    for identity in ids:
        (root / identity).mkdir(parents=True)
        for photo in enrolment[identity]:
            (root / identity / photo.name).symlink_to(photo)
    return root


def face_tile(encoder: FaceEncoder, photo: Path, side: int) -> np.ndarray:
    """A `side` px square of a real photo around its largest face (the face about half the tile's width)."""
    image = read_image(photo)
    x, y, w, h = encoder.encode(image)[0].detection.bbox
    half = int(max(w, h))
    cx, cy = int(x + w / 2), int(y + h / 2)
    framed = cv2.copyMakeBorder(image, half, half, half, half, cv2.BORDER_REPLICATE)
    square = framed[cy : cy + 2 * half, cx : cx + 2 * half]
    return cv2.resize(square, (side, side), interpolation=cv2.INTER_AREA)


def side_by_side(*tiles: np.ndarray, gap: int = 60) -> np.ndarray:
    """One grey photo holding the tiles in a row, bottoms aligned, `gap` px apart and from the edges."""
    height = max(t.shape[0] for t in tiles) + 2 * gap
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) + 1)
    canvas = np.full((height, width, 3), 128, np.uint8)
    left = gap
    for tile in tiles:
        top = height - gap - tile.shape[0]
        canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
        left += tile.shape[1] + gap
    return canvas
