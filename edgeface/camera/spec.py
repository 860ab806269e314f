"""`CameraSpec`: the `[camera]` config section, validated; `open_source` builds the camera from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeface.errors import ConfigError
from edgeface.util.fields import bounded, check_fields
from edgeface.util.imagesize import DEFAULT_MAX_MEGAPIXELS

KINDS = ("picamera2", "opencv", "replay", "emulated")


def _topic_safe_name(name: str) -> None:
    if not name or "/" in name or "+" in name or "#" in name:
        raise ValueError(f"must be non-empty without '/', '+' or '#', got {name!r}")


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """One camera: the `[camera]` config section, parsed straight into this type. Errors name the key.

    - picamera2: `device` = camera number (default 0); main stream `width`x`height`, lores stream
      `lores_width` wide (same aspect; 0 = none) for detection.
    - opencv: exactly one of `device` (V4L2 index or /dev/videoN), `pipeline` (GStreamer, ends in appsink),
      `url` (rtsp://, http://), `path` (video file).
    - replay: `path` = image folder or video file, played at `fps`, `realtime` or as fast as read, `loop`.
    - emulated: `faces` = a folder of identity sub-folders walked in one by one.
    Live kinds are wrapped in a ReconnectingSource when `reconnect` is true.
    """

    kind: str = bounded("opencv", choices=KINDS)
    name: str = bounded("cam0", check=_topic_safe_name)
    # V4L2 index (0 or "0") or path (opencv); camera number (picamera2)
    device: int | str | None = None
    url: str | None = None  # rtsp:// or http:// (opencv)
    pipeline: str | None = None  # GStreamer pipeline ending in appsink, e.g. Jetson nvarguscamerasrc
    path: Path | None = None  # video file (opencv); image folder or video (replay)
    faces: Path | None = None  # identity folders walked in one by one (emulated)
    # 8192: above the largest Pi and Jetson CSI sensors (Camera Module 3: 4608x2592)
    width: int = bounded(640, 16, 8192)
    height: int = bounded(480, 16, 8192)
    fps: float = bounded(15.0, 0, 240, low_open=True)
    realtime: bool = True
    loop: bool = False
    lores_width: int = bounded(320, 0, 8192)
    reconnect: bool = True
    backoff_initial_s: float = bounded(0.5, 0, 3600, low_open=True)
    backoff_max_s: float = bounded(30.0, 0, 3600, low_open=True)
    stall_timeout_s: float = bounded(5.0, 0, 600, low_open=True)
    seed: int = bounded(0, 0, 2**32 - 1)  # numpy seeds are non-negative
    # replay: larger images are skipped, and counted; `edgeface enroll/identify/gallery build` take
    # --max-megapixels with the same default
    max_megapixels: float = bounded(DEFAULT_MAX_MEGAPIXELS, 0.01, 1000)

    def __post_init__(self) -> None:
        check_fields(self, "camera")
        if isinstance(self.device, str) and self.device.isdigit():
            object.__setattr__(self, "device", int(self.device))  # "0" in TOML is V4L2 index 0
        if self.kind == "picamera2" and self.lores_width > self.width:
            raise ConfigError(
                f"camera.lores_width: must be in [0, width={self.width}], got {self.lores_width}"
            )
        if self.backoff_initial_s > self.backoff_max_s:
            raise ConfigError(
                f"camera.backoff_initial_s: must be > 0 and <= backoff_max_s ({self.backoff_max_s}), "
                f"got {self.backoff_initial_s}"
            )
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
        if self.kind == "emulated" and self.faces is None:
            raise ConfigError("camera.faces: the emulated camera needs `faces` (identity folders)")
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
