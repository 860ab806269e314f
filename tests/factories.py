"""Shared test factories: detections, frames, galleries, signing keys, and a device's sync side on a broker.

Holds no tests itself; test modules import what they need (`from tests.factories import ...`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import paho.mqtt.client as mqtt

from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.index import GalleryIndex, IndexHolder
from edgeface.mqtt.topics import fleet_gallery, fleet_gallery_chunk
from edgeface.server.signing import Ed25519PrivateKey, generate_keypair, load_private_key, sign
from edgeface.sync.bundle import Bundle
from edgeface.sync.client import GallerySyncClient, SyncClientSettings
from edgeface.sync.manifest import manifest_bytes
from edgeface.sync.mqtt import PahoTransport
from edgeface.sync.signing import Ed25519PublicKey, load_public_key
from edgeface.sync.updater import IndexUpdater
from edgeface.types import KEYPOINT_NAMES, Detection, Frame
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.photos import read_image
from tests.conftest import Broker

MODEL = "ab" * 32
FLEET = "lobby"
PREFIX = "edgeface"


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
    holder: IndexHolder
    client: mqtt.Client
    galleries: list[Gallery] = field(default_factory=list)

    @property
    def index(self) -> GalleryIndex:
        return self.holder.current

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
    holder = IndexHolder(GalleryIndex(initial))
    updater = IndexUpdater(holder)
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
    return Device(name, store, sync, holder, client, galleries)


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
