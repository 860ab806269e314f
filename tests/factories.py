"""Shared test factories: detections, frames, galleries, signing keys, and a device's sync side on a broker.

Holds no tests itself; test modules import what they need (`from tests.factories import ...`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from edgeface.identity.decision import DecisionRule
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.index import GalleryIndex, IndexSettings
from edgeface.identity.live import GoLive, RuleFor
from edgeface.mqtt.topics import fleet_gallery, fleet_gallery_chunk
from edgeface.server.signing import Ed25519PrivateKey, generate_keypair, load_private_key, sign
from edgeface.sync.bundle import Bundle
from edgeface.sync.client import GallerySyncClient, SyncClientSettings
from edgeface.sync.manifest import manifest_bytes
from edgeface.sync.mqtt import PahoTransport
from edgeface.sync.signing import Ed25519PublicKey, load_public_key
from edgeface.sync.updater import IndexUpdater
from edgeface.types import KEYPOINT_NAMES, Detection, Frame
from tests.conftest import Broker

MODEL = "ab" * 32
FLEET = "lobby"
PREFIX = "edgeface"


def fixed_rule(threshold: float = 0.5, margin: float = 0.0) -> RuleFor:
    """A decision rule that is the same for every gallery (set by the test)."""
    rule = DecisionRule(threshold, margin, "config", "set by the test")
    return lambda gallery: rule


def go_live(
    gallery: Gallery, threshold: float = 0.5, margin: float = 0.0, settings: IndexSettings | None = None
) -> GoLive:
    return GoLive(gallery, fixed_rule(threshold, margin), settings)


def textured(
    value: int = 128, spread: int = 60, shape: tuple[int, int] = (240, 320), seed: int = 0
) -> np.ndarray:
    """A sharp (noisy) BGR image of mean brightness about `value`."""
    noise = np.random.default_rng(seed).integers(-spread, spread + 1, (*shape, 1))
    return np.clip(value + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)


class ScriptedEncoder:
    """Detects the same faces in every frame; embeds each face as whoever the test says is standing there."""

    def __init__(self, faces: Sequence[Detection], person: np.ndarray) -> None:
        self.detector = self
        self.faces = list(faces)
        self.person = person
        self.seen_shapes: list[tuple[int, ...]] = []
        self.embedded = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.seen_shapes.append(image.shape)
        return list(self.faces)

    def embed_faces(self, image: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        self.embedded += len(detections)
        return np.stack([self.person] * len(detections))


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

    settings = SyncClientSettings(FLEET, name, model, PREFIX, **config)  # type: ignore[arg-type]
    sync = GallerySyncClient(settings, keys.public, store, on_gallery)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    PahoTransport.attach_to(client, sync)
    client.connect(broker.host, broker.port)
    client.loop_start()
    wait_for(client.is_connected, 5, "device connect")
    return Device(name, store, sync, live, client, galleries)
