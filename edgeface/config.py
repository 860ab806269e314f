"""Daemon configuration (docs/design.md §7): one TOML file, one strict section per stage.

Each section parses straight into the type its stage uses (`[camera]` into `CameraSpec`, `[mqtt]` into
`MqttSettings`, `[match]` into `MatchSettings`, `[quality]` into `QualitySettings`), whose fields declare their defaults and limits once
(`edgeface.util.fields`). Unknown keys are errors; every error names the full key path. Importing this module
pulls in no cv2, hnswlib or paho.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeface.camera.spec import CameraSpec
from edgeface.errors import ConfigError
from edgeface.identity.index import IndexSettings
from edgeface.mqtt.ha_settings import HomeAssistantSettings
from edgeface.mqtt.settings import MqttSettings
from edgeface.pipeline.match_settings import MatchSettings
from edgeface.pipeline.visitor_settings import VisitorSettings
from edgeface.sync.fetch import UrlFetchSettings
from edgeface.sync.validate import DEFAULT_MAX_VERSION_JUMP, MAX_VERSION, valid_topic_level
from edgeface.util.fields import bounded, check_fields, finite, like, settable, shown
from edgeface.util.files import MAX_CONFIG_BYTES, FileRefused, read_text
from edgeface.util.logsafe import printable
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.quality_settings import QualitySettings

DEFAULT_PATH = Path("/etc/edgeface/edgeface.toml")
DEFAULT_DEVICE_ID = "door-1"

# Keys that lived elsewhere in earlier versions: named in the error so an old file is easy to fix.
MOVED_KEYS = {
    **{f"match.{key}": f"[quality] {key}" for key in (f.name for f in dataclasses.fields(QualitySettings))},
    "mqtt.ca_file": "[mqtt.tls] ca_file",
    "mqtt.cert_file": "[mqtt.tls] cert_file",
    "mqtt.key_file": "[mqtt.tls] key_file",
    "mqtt.tls_insecure": "[mqtt.tls] insecure",
}


def _topic_level(value: str) -> None:
    valid_topic_level(value, "value")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    # Each is one level of the MQTT topics ({prefix}/{id}/..., {prefix}/fleet/{fleet}/gallery).
    id: str = bounded(DEFAULT_DEVICE_ID, check=_topic_level)
    fleet: str = bounded("default", check=_topic_level)
    state_dir: Path = Path("/var/lib/edgeface")

    def __post_init__(self) -> None:
        check_fields(self, "device")


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    model: str = bounded("full", choices=("full", "short"))
    min_score: float = bounded(0.5, 0.05, 0.99)
    every_n_frames: int = bounded(1, 1, 30)
    # Re-run on a bordered frame when nothing is found: needed for tight photo crops, wasted on camera frames.
    pad_retry: bool = False
    queue_frames: int = bounded(2, 1, 64)  # frames waiting for detection; the oldest is dropped beyond it

    def __post_init__(self) -> None:
        check_fields(self, "detector")


@dataclass(frozen=True, slots=True)
class EmbedderConfig:
    models_dir: Path | None = None
    # SFace (issue 18): open-set DIR far above facerec128's at the same FPIR (README, `edgeface eval
    # --open-set`); "facerec128.int8.json" stays selectable. int8 vs float32: see the card's `fidelity`/`speed`.
    card: str = DEFAULT_EMBEDDER_CARD
    # 2: on a quiet host (bench/results/embedder_tflite_runtime.json, ai-edge-litert, XNNPACK) int8 took
    # 0.59 ms/face with 2 threads vs 1.08 ms with 1; under heavy load (bench/results/embedder.json) 2 threads
    # gained nothing (1.18 vs 1.06 ms) but lost little. Set 1 if the unit runs other busy work.
    num_threads: int = bounded(2, 1, 16)
    refine_landmarks: bool = True  # +5 ms/face, TAR@FAR1e-2 up 8 points (README, `edgeface eval`)
    # Average each crop's embedding with its mirror image's: galleries are enrolled this way, so probes must
    # be too (bench/results/face_path.json: one more embedder call per undecided face).
    flip: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "embedder")


@dataclass(frozen=True, slots=True)
class GalleryConfig:
    dir: Path | None = None  # default: <device.state_dir>/gallery
    # Defaults and limits are IndexSettings' (edgeface/identity/index.py), chosen by bench/search.py.
    index: str = like(IndexSettings, "kind")
    exact_below: int = like(IndexSettings, "exact_below")
    hnsw_m: int = like(IndexSettings, "m")
    hnsw_ef_construction: int = like(IndexSettings, "ef_construction")
    hnsw_ef: int = like(IndexSettings, "ef")

    def __post_init__(self) -> None:
        check_fields(self, "gallery")


@dataclass(frozen=True, slots=True)
class SyncConfig:
    enabled: bool = False
    public_key: Path | None = None  # trust exactly this gallery-signing key, or:
    root_key: Path | None = None  # trust signing keys this offline root certifies (rotation, revocation)
    expiry_policy: str = bounded("warn", choices=("warn", "deny"))
    # A signed bundle may move the running version forward by at most this much (a huge one cannot lock
    # the fleet out of later updates).
    max_version_jump: int = bounded(DEFAULT_MAX_VERSION_JUMP, 1, MAX_VERSION)
    # Stale until a valid signed timestamp (`gallery timestamp`) arrives; without it, stale only once one
    # was seen and expired. A stale gallery is reported; under `deny` it also stops matching.
    timestamp_required: bool = False
    url: UrlFetchSettings = field(
        default_factory=UrlFetchSettings
    )  # [sync.url]: payloads a signed manifest names by URL

    def __post_init__(self) -> None:
        check_fields(self, "sync")
        if self.enabled and self.public_key is None and self.root_key is None:
            raise ConfigError("sync.public_key: required when sync.enabled is true (or sync.root_key)")
        if self.public_key is not None and self.root_key is not None:
            raise ConfigError("sync.root_key: give sync.public_key or sync.root_key, not both")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    interval_s: float = bounded(30.0, 1.0, 3600.0)

    def __post_init__(self) -> None:
        check_fields(self, "metrics")


@dataclass(frozen=True, slots=True)
class Config:
    device: DeviceConfig = DeviceConfig()
    camera: CameraSpec | None = None  # None: no [camera] section (the CLI verbs need none; the daemon does)
    detector: DetectorConfig = DetectorConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    gallery: GalleryConfig = GalleryConfig()
    match: MatchSettings = field(default_factory=MatchSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    mqtt: MqttSettings = field(default_factory=lambda: MqttSettings(device=DEFAULT_DEVICE_ID))
    sync: SyncConfig = SyncConfig()
    metrics: MetricsConfig = MetricsConfig()
    homeassistant: HomeAssistantSettings = field(default_factory=HomeAssistantSettings)
    visitors: VisitorSettings = field(default_factory=VisitorSettings)

    def __post_init__(self) -> None:
        # The MQTT client id, topics and spool follow [device]; a replace() of `device` keeps them in step.
        spool = self.device.state_dir / "spool.sqlite3"
        if self.mqtt.device != self.device.id or self.mqtt.spool_path != spool:
            object.__setattr__(
                self, "mqtt", dataclasses.replace(self.mqtt, device=self.device.id, spool_path=spool)
            )

    @property
    def gallery_dir(self) -> Path:
        return self.gallery.dir or self.device.state_dir / "gallery"

    def require_camera(self) -> CameraSpec:
        if self.camera is None:
            raise ConfigError("camera: the config has no [camera] section (set camera.kind and its source)")
        return self.camera


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """The TOML value as the field's type; None only where the field is optional."""
    allowed = _alternatives(annotation)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            return _section(key, kind, value) if isinstance(value, dict) else _wrong(key, "a table", value)
    if Path in allowed:
        if not isinstance(value, str) or not value or "\0" in value:
            raise ConfigError(f"{key}: must be a non-empty path string without NUL, got {shown(value)}")
        return Path(value)
    if bool in allowed:
        return value if isinstance(value, bool) else _wrong(key, "true or false", value)
    if isinstance(value, bool):
        return _wrong(key, _expected(allowed), value)
    if int in allowed and isinstance(value, int):
        return value
    if float in allowed and isinstance(value, int | float):
        return float(value) if finite(value) else _wrong(key, "a number, finite", value)
    if str in allowed and isinstance(value, str):
        return value
    return _wrong(key, _expected(allowed), value)


def _alternatives(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _expected(allowed: tuple[Any, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string"}
    return " or ".join(names[kind] for kind in allowed if kind in names) or "another type"


def _wrong(key: str, expected: str, value: Any) -> Any:
    raise ConfigError(f"{key}: must be {expected}, got {shown(value)}")


def _section(name: str, cls: type, raw: Any, **bound: Any) -> Any:
    """Build `cls` from one TOML table; `bound` supplies the fields the file does not set."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: must be a table, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = settable(cls)
    for key in sorted(set(raw) - set(fields)):
        moved = MOVED_KEYS.get(f"{name}.{key}")
        if moved is not None:
            raise ConfigError(f"{name}.{key}: moved to {moved}")
        raise ConfigError(f"{name}.{printable(key, 80)}: unknown key (known: {', '.join(fields)})")
    values = {key: _coerce(f"{name}.{key}", value, hints[key]) for key, value in raw.items()}
    return cls(**values, **bound)


def parse_config(raw: dict[str, Any]) -> Config:
    hints = typing.get_type_hints(Config)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"{printable(unknown[0], 80)}: unknown section (known: {', '.join(hints)})")
    device = _section("device", DeviceConfig, raw.get("device", {}))
    bound: dict[str, dict[str, Any]] = {
        "mqtt": {"device": device.id, "spool_path": device.state_dir / "spool.sqlite3"}
    }
    sections = {
        name: _section(name, _section_type(hints[name]), value, **bound.get(name, {}))
        for name, value in raw.items()
        if name != "device"
    }
    return Config(device=device, **sections)


def _section_type(annotation: Any) -> type:
    return next(k for k in _alternatives(annotation) if isinstance(k, type) and dataclasses.is_dataclass(k))


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = read_text(path, MAX_CONFIG_BYTES, "")  # config errors start with the path
    except FileRefused as exc:
        raise ConfigError(f"{path}: config file not found" if exc.missing else str(exc)) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    except RecursionError:  # tomllib recurses once per nesting level of arrays and inline tables
        raise ConfigError(f"{path}: not valid TOML (nested too deeply)") from None
    try:
        return parse_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
