"""`CameraSpec`: what the `[camera]` config section describes, validated; `open_source` builds it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeface.camera.scene import SceneSpec
from edgeface.errors import ConfigError
from edgeface.imagesize import DEFAULT_MAX_MEGAPIXELS

KINDS = ("picamera2", "opencv", "replay", "emulated")


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """One camera. Errors name the config key (`camera.<field>`).

    - picamera2: `device` = camera number (default 0); main stream `width`x`height`, lores stream
      `lores_width` wide (same aspect; 0 = none) for detection.
    - opencv: exactly one of `device` (V4L2 index or /dev/videoN), `pipeline` (GStreamer, ends in appsink),
      `url` (rtsp://, http://), `path` (video file).
    - replay: `path` = image folder or video file, played at `fps`, `realtime` or as fast as read, `loop`.
    - emulated: `scene` (a SceneSpec), or `faces` = a folder of identity sub-folders walked in one by one.
    Live kinds are wrapped in a ReconnectingSource when `reconnect` is true.
    """

    kind: str
    name: str = "cam0"
    device: int | str | None = None
    url: str | None = None
    pipeline: str | None = None
    path: Path | None = None
    width: int = 640
    height: int = 480
    fps: float = 15.0
    realtime: bool = True
    loop: bool = False
    lores_width: int = 320
    reconnect: bool = True
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    stall_timeout_s: float = 5.0
    scene: SceneSpec | None = None
    faces: Path | None = None
    seed: int = 0
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS  # replay: larger images are skipped, and counted

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"camera.kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.name or "/" in self.name or "+" in self.name or "#" in self.name:
            raise ConfigError(f"camera.name: must be non-empty without '/', '+' or '#', got {self.name!r}")
        if self.width < 16 or self.height < 16:
            raise ConfigError(f"camera.width/height: must be at least 16, got {self.width}x{self.height}")
        if not 0 < self.fps <= 240:
            raise ConfigError(f"camera.fps: must be in (0, 240], got {self.fps}")
        if self.lores_width < 0 or (self.kind == "picamera2" and self.lores_width > self.width):
            raise ConfigError(
                f"camera.lores_width: must be in [0, width={self.width}], got {self.lores_width}"
            )
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ConfigError(
                f"camera.backoff_initial_s: must be > 0 and <= backoff_max_s ({self.backoff_max_s}), "
                f"got {self.backoff_initial_s}"
            )
        if not self.max_megapixels > 0:
            raise ConfigError(f"camera.max_megapixels: must be > 0, got {self.max_megapixels}")
        if self.stall_timeout_s <= 0:
            raise ConfigError(f"camera.stall_timeout_s: must be > 0, got {self.stall_timeout_s}")
        self._check_target()

    def _check_target(self) -> None:
        targets = {k: v for k, v in (("device", self.device), ("url", self.url), ("pipeline", self.pipeline),
                                     ("path", self.path)) if v is not None}  # fmt: skip
        if self.kind == "opencv" and len(targets) != 1:
            raise ConfigError(
                "camera: an opencv camera needs exactly one of device, url, pipeline, path; "
                f"got {sorted(targets) or 'none'}"
            )
        if self.kind == "opencv" and self.pipeline is not None and "appsink" not in self.pipeline:
            raise ConfigError("camera.pipeline: a GStreamer pipeline for OpenCV must end in `appsink`")
        if self.kind == "replay" and self.path is None:
            raise ConfigError("camera.path: replay needs an image folder or a video file")
        if self.kind == "emulated" and self.scene is None and self.faces is None:
            raise ConfigError("camera.faces: the emulated camera needs `faces` (identity folders) or a scene")
        if self.kind == "picamera2" and self.device is not None and not isinstance(self.device, int):
            raise ConfigError(f"camera.device: picamera2 takes a camera number, got {self.device!r}")

    @property
    def lores_size(self) -> tuple[int, int] | None:
        """The lores stream size: `lores_width` wide, main's aspect, even dimensions; None when disabled."""
        if self.lores_width == 0:
            return None
        height = round(self.lores_width * self.height / self.width / 2) * 2
        return (self.lores_width - self.lores_width % 2, max(2, height))

    @property
    def live(self) -> bool:
        """Cameras that can come back after a failure (everything except replays and finite files)."""
        return self.kind == "picamera2" or (self.kind == "opencv" and self.path is None)
