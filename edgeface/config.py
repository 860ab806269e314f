"""Daemon configuration (DESIGN §7): one TOML file, one strict section per stage.

Every field has a default and, where it matters, bounds; unknown keys are errors; every error names the
full key path. Importing this module pulls in no cv2, hnswlib or paho.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeface.errors import ConfigError
from edgeface.imagesize import DEFAULT_MAX_MEGAPIXELS
from edgeface.logsafe import printable
from edgeface.sync.validate import DEFAULT_MAX_VERSION_JUMP, MAX_VERSION, valid_topic_level

DEFAULT_PATH = Path("/etc/edgeface/edgeface.toml")


def bounded(
    default: Any, low: float | None = None, high: float | None = None, choices: tuple = (), **kw: Any
) -> Any:
    return field(default=default, metadata={"low": low, "high": high, "choices": choices, **kw})


def _topic_level(value: str) -> None:
    valid_topic_level(value, "value")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    # Each is one level of the MQTT topics ({prefix}/{id}/..., {prefix}/fleet/{fleet}/gallery).
    id: str = bounded("door-1", check=_topic_level)
    fleet: str = bounded("default", check=_topic_level)
    state_dir: Path = Path("/var/lib/edgeface")


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """Mirrors `edgeface.camera.CameraSpec` (which checks combinations); set only what your kind needs."""

    kind: str = bounded("opencv", choices=("picamera2", "opencv", "replay", "emulated"))
    name: str = "cam0"
    device: str | None = None  # V4L2 index ("0") or path (opencv); camera number (picamera2)
    url: str | None = None  # rtsp:// or http:// (opencv)
    pipeline: str | None = None  # GStreamer pipeline ending in appsink, e.g. Jetson nvarguscamerasrc
    path: Path | None = None  # video file (opencv); image folder or video (replay)
    faces: Path | None = None  # identity folders walked in one by one (emulated)
    width: int = bounded(640, 64, 4096)
    height: int = bounded(480, 64, 4096)
    fps: float = bounded(15.0, 0.1, 120.0)
    realtime: bool = True
    loop: bool = False
    lores_width: int = bounded(320, 0, 4096)
    reconnect: bool = True
    backoff_max_s: float = bounded(30.0, 0.5, 3600.0)
    stall_timeout_s: float = bounded(5.0, 0.1, 600.0)
    seed: int = 0
    # replay: images above this are skipped (counted); `edgeface enroll/identify/gallery build` take
    # --max-megapixels with the same default
    max_megapixels: float = bounded(DEFAULT_MAX_MEGAPIXELS, 0.01, 1000.0)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    model: str = bounded("full", choices=("full", "short"))
    min_score: float = bounded(0.5, 0.05, 0.99)
    every_n_frames: int = bounded(1, 1, 30)
    # Re-run on a bordered frame when nothing is found: needed for tight photo crops, wasted on camera frames.
    pad_retry: bool = False
    queue_frames: int = bounded(2, 1, 64)  # frames waiting for detection; the oldest is dropped beyond it


@dataclass(frozen=True, slots=True)
class EmbedderConfig:
    models_dir: Path | None = None
    # int8, not float32: bench/results/embedder.json measured 1.06 vs 4.36 ms/face (1 thread, XNNPACK) at
    # cosine 0.9996 to float32 and equal verification AUC (card `fidelity`); GhostFaceNet has no weights here.
    card: str = "facerec128.int8.json"
    # 2: on a quiet host (bench/results/embedder_tflite_runtime.json, ai-edge-litert, XNNPACK) int8 took
    # 0.59 ms/face with 2 threads vs 1.08 ms with 1; under heavy load (bench/results/embedder.json) 2 threads
    # gained nothing (1.18 vs 1.06 ms) but lost little. Set 1 if the unit runs other busy work.
    num_threads: int = bounded(2, 1, 16)
    refine_landmarks: bool = True  # +5 ms/face, TAR@FAR1e-2 up 8 points (README, `edgeface eval`)
    # Average each crop's embedding with its mirror image's: galleries are enrolled this way, so probes must
    # be too (bench/results/face_path.json: one more embedder call per undecided face).
    flip: bool = True


@dataclass(frozen=True, slots=True)
class GalleryConfig:
    dir: Path | None = None  # default: <device.state_dir>/gallery
    # bench/results/search.json: exact search is as fast as HNSW up to 10k identities (0.45 vs 0.49 ms at
    # 10k) with perfect recall; above that HNSW with ef 256, the smallest ef that kept recall@1 >= 0.99.
    index: str = bounded("auto", choices=("auto", "hnsw", "exact"))
    exact_below: int = bounded(10_000, 0)
    hnsw_m: int = bounded(16, 4, 64)
    hnsw_ef: int = bounded(256, 8, 1024)


@dataclass(frozen=True, slots=True)
class MatchConfig:
    # None: the gallery's own calibration (made when it was enrolled or built), else the card's fallback.
    threshold: float | None = bounded(None, -1.0, 1.0)
    margin: float | None = bounded(None, 0.0, 1.0)
    min_frames: int = bounded(3, 1, 100)
    max_wait_ms: int = bounded(1500, 50, 60_000)
    cooldown_s: float = bounded(10.0, 0.0, 3600.0)
    # A track decided `unknown` is searched again this often while its person stays (better frames may come).
    recheck_s: float = bounded(1.0, 0.1, 60.0)
    # A decided track's face is compared with the face it was decided on this often; a different person
    # standing in the same spot gets a fresh decision.
    reverify_s: float = bounded(1.0, 0.1, 60.0)
    min_face_px: int = bounded(40, 8, 2000)
    min_sharpness: float = bounded(20.0, 0.0)
    max_yaw: float = bounded(0.6, 0.0, 1.0)
    min_brightness: float = bounded(40.0, 0.0, 255.0)
    max_brightness: float = bounded(220.0, 0.0, 255.0)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Mirrors `edgeface.mqtt.MqttSettings`; the device id comes from `device.id`."""

    host: str = "localhost"
    port: int = bounded(1883, 1, 65535)
    client_id: str = ""
    protocol: str = bounded("3.1.1", choices=("3.1.1", "5"))
    prefix: str = "edgeface"
    keepalive: int = bounded(30, 5, 3600)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    credentials_file: Path | None = None
    spool_max_events: int = bounded(100_000, 10)
    max_inflight: int = bounded(16, 1, 1000)
    ha_discovery: bool = False


@dataclass(frozen=True, slots=True)
class SyncConfig:
    enabled: bool = False
    public_key: Path | None = None
    expiry_policy: str = bounded("warn", choices=("warn", "deny"))
    # A signed bundle may move the running version forward by at most this much (a huge one cannot lock
    # the fleet out of later updates).
    max_version_jump: int = bounded(DEFAULT_MAX_VERSION_JUMP, 1, MAX_VERSION)


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    interval_s: float = bounded(30.0, 1.0, 3600.0)


@dataclass(frozen=True, slots=True)
class Config:
    device: DeviceConfig = DeviceConfig()
    camera: CameraConfig = CameraConfig()
    detector: DetectorConfig = DetectorConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    gallery: GalleryConfig = GalleryConfig()
    match: MatchConfig = MatchConfig()
    mqtt: MqttConfig = MqttConfig()
    sync: SyncConfig = SyncConfig()
    metrics: MetricsConfig = MetricsConfig()

    @property
    def gallery_dir(self) -> Path:
        return self.gallery.dir or self.device.state_dir / "gallery"


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    optional = typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(annotation)
    if optional:
        if value is None:
            return None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is Path:
        if not isinstance(value, str) or not value or "\0" in value:
            raise ConfigError(f"{key}: must be a non-empty path string without NUL, got {_shown(value)}")
        return Path(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {_shown(value)}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise ConfigError(f"{key}: must be a number, finite, got {_shown(value)}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {_shown(value)}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {_shown(value)}")
        return value
    raise ConfigError(f"{key}: unsupported type {annotation}")


def _shown(value: object) -> str:
    """A value quoted in an error: its repr, printable and cut short (a config may hold megabytes)."""
    try:
        return printable(repr(value), 80)
    except ValueError:  # an integer too long for repr
        return "a huge integer"


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _check_bounds(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    if value is None:
        return
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {list(meta['choices'])}, got {_shown(value)}")
    if meta.get("check") is not None:
        try:
            meta["check"](value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(
            f"{key}: must be in [{low}, {high if high is not None else 'inf'}], got {_shown(value)}"
        )


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: must be a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{printable(unknown[0], 80)}: unknown key (known: {', '.join(fields)})")
    values = {}
    for key, value in raw.items():
        path = f"{name}.{key}"
        values[key] = _coerce(path, value, hints[key])
        _check_bounds(path, values[key], fields[key].metadata)
    return cls(**values)


def parse_config(raw: dict[str, Any]) -> Config:
    hints = typing.get_type_hints(Config)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"{printable(unknown[0], 80)}: unknown section (known: {', '.join(hints)})")
    config = Config(**{name: _section(name, hints[name], value) for name, value in raw.items()})
    m = config.match
    if m.min_brightness >= m.max_brightness:
        raise ConfigError("match.min_brightness: must be below match.max_brightness")
    if config.sync.enabled and config.sync.public_key is None:
        raise ConfigError("sync.public_key: required when sync.enabled is true")
    return config


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
