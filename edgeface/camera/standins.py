"""Host stand-ins for a `Picamera2` object and a `cv2.VideoCapture`, backed by an emulated Scene.

They implement only the API subset our sources use, so the picamera2 and OpenCV code paths run on the
host. An `EmulatedDevice` is the "camera plugged in": the scene keeps running across reopens, and a
`FaultPlan` makes it fail like real hardware (unplugged at open, stream ends, driver raises, read hangs).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeface.camera.base import Pacer
from edgeface.camera.scene import Scene, SceneSpec

log = logging.getLogger(__name__)

FAULT_MODES = ("eof", "raise", "hang")


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """How the emulated camera fails.

    - `failed_opens`: the first N opens fail (camera unplugged);
    - `fail_after`: each session delivers this many frames, then fails by `mode`: "eof" (no more frames:
      `read()` gives (False, None)), "raise" (the driver raises), "hang" (the call blocks `hang_s`, then eof);
    - `faulty_sessions`: only the first N sessions fail that way (None: every session).
    """

    failed_opens: int = 0
    fail_after: int | None = None
    mode: str = "eof"
    faulty_sessions: int | None = None
    hang_s: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"FaultPlan.mode must be one of {FAULT_MODES}, got {self.mode!r}")


class EmulatedFault(RuntimeError):
    """Raised by the stand-ins where the real driver would raise."""


@dataclass(slots=True)
class _Session:
    number: int
    faulty: bool
    served: int = 0
    dead: bool = False


class EmulatedDevice:
    """One emulated camera. Make handles with `video_capture(...)` or `picamera2(...)` (or pass those
    bound methods as the `capture_factory` / `picamera2_factory` of the real sources)."""

    def __init__(
        self,
        scene: Scene | SceneSpec,
        fps: float = 15.0,
        realtime: bool = True,
        faults: FaultPlan | None = None,
    ) -> None:
        self.scene = scene if isinstance(scene, Scene) else Scene(scene)
        self.fps = fps
        self.faults = faults or FaultPlan()
        self._pacer = Pacer(fps, realtime)
        self._lock = threading.Lock()
        self.opens = 0  # open attempts, failed ones included
        self.sessions = 0  # successful opens
        self.open_handles = 0
        self.frames = 0  # frames rendered over all sessions; also the scene clock
        self.plugged = True

    def unplug(self) -> None:
        """Pull the cable: open handles stop delivering and new opens fail until `plug()`."""
        self.plugged = False

    def plug(self) -> None:
        self.plugged = True

    def video_capture(self, target: int | str = 0, api: int = cv2.CAP_ANY) -> EmulatedVideoCapture:
        return EmulatedVideoCapture(self, target, api)

    def picamera2(self, camera_num: int = 0, platform: str = "pisp") -> EmulatedPicamera2:
        return EmulatedPicamera2(self, camera_num, platform)

    def open(self) -> _Session | None:
        with self._lock:
            self.opens += 1
            if not self.plugged or self.opens <= self.faults.failed_opens:
                return None
            self.sessions += 1
            self.open_handles += 1
            limit = self.faults.faulty_sessions
            faulty = self.faults.fail_after is not None and (limit is None or self.sessions <= limit)
            return _Session(self.sessions, faulty)

    def close(self, session: _Session) -> None:
        with self._lock:
            self.open_handles -= 1
        session.dead = True

    def next_image(self, session: _Session) -> np.ndarray | None:
        """The next frame for this session (blocking like hardware), or None when the stream has ended."""
        plan = self.faults
        if not self.plugged:
            session.dead = True
        if session.dead:
            return None
        if session.faulty and plan.fail_after is not None and session.served >= plan.fail_after:
            session.dead = True
            if plan.mode == "raise":
                raise EmulatedFault(f"emulated camera: driver error after {session.served} frames")
            if plan.mode == "hang":
                time.sleep(plan.hang_s)
            return None
        self._pacer.wait(float("inf"))
        with self._lock:
            index = self.frames
            self.frames += 1
        session.served += 1
        image, _ = self.scene.render(index / self.fps, index)
        return image


class EmulatedVideoCapture:
    """The `cv2.VideoCapture` subset: isOpened, read, set, get, release."""

    def __init__(self, device: EmulatedDevice, target: int | str = 0, api: int = cv2.CAP_ANY) -> None:
        self.device = device
        self.target = target
        self.api = api
        self._session = device.open()
        self._props: dict[int, float] = {cv2.CAP_PROP_FPS: device.fps}
        self._released = False

    def isOpened(self) -> bool:
        return self._session is not None and not self._session.dead

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._session is None:
            return False, None
        image = self.device.next_image(self._session)
        if image is None:
            return False, None
        width, height = self._props.get(cv2.CAP_PROP_FRAME_WIDTH), self._props.get(cv2.CAP_PROP_FRAME_HEIGHT)
        if width and height and (int(width), int(height)) != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, (int(width), int(height)), interpolation=cv2.INTER_AREA)
        return True, image

    def set(self, prop: int, value: float) -> bool:
        if prop not in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS):
            return False
        self._props[prop] = float(value)
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return self._props.get(prop, float(self.device.scene.spec.width))
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return self._props.get(prop, float(self.device.scene.spec.height))
        if prop == cv2.CAP_PROP_POS_FRAMES:
            return float(self._session.served if self._session else 0)
        return self._props.get(prop, 0.0)

    def release(self) -> None:
        if self._session is not None and not self._released:
            self.device.close(self._session)
        self._released = True


FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888", "YUV420")


class EmulatedRequest:
    """A completed request: `make_array(stream)` copies pixels out; `release()` returns the buffers."""

    def __init__(self, camera: EmulatedPicamera2, arrays: dict[str, np.ndarray]) -> None:
        self._camera = camera
        self._arrays = arrays
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("make_array on a released request")
        if name not in self._arrays:
            raise KeyError(f"stream {name!r} is not configured")
        return self._arrays[name].copy()

    def get_metadata(self) -> dict[str, Any]:
        return {"SensorTimestamp": time.monotonic_ns()}

    def release(self) -> None:
        if self.released:
            raise RuntimeError("request released twice")
        self.released = True
        self._camera.outstanding -= 1


class EmulatedPicamera2:
    """The `picamera2.Picamera2` subset: create_*_configuration, configure, start, capture_request, stop,
    close. `platform="vc4"` (Pi 4 and older) only accepts YUV420 for the lores stream, like the real one."""

    def __init__(self, device: EmulatedDevice, camera_num: int = 0, platform: str = "pisp") -> None:
        self.device = device
        self.platform = platform
        self._session = device.open()
        if self._session is None:
            raise EmulatedFault(f"emulated camera {camera_num}: not found (unplugged)")
        spec = device.scene.spec
        self.camera_properties = {"Model": "emulated", "PixelArraySize": (spec.width, spec.height)}
        self.camera_config: dict[str, Any] | None = None
        self.started = False
        self.outstanding = 0
        self.requests = 0  # requests handed out, for tests

    def _configuration(
        self,
        use_case: str,
        main: dict[str, Any] | None,
        lores: dict[str, Any] | None,
        buffers: int,
        **kw: Any,
    ) -> dict[str, Any]:
        config: dict[str, Any] = {
            "use_case": use_case,
            "buffer_count": buffers,
            "main": {"format": "XBGR8888", "size": (640, 480)},
        }
        config["main"].update(main or {})
        config["lores"] = None if lores is None else {"format": "YUV420", **lores}
        config["controls"] = dict(kw.get("controls") or {})
        return config

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        buffer_count: int = 6,
        **kw: Any,
    ) -> dict[str, Any]:
        return self._configuration("video", main, lores, buffer_count, **kw)

    def create_preview_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        buffer_count: int = 4,
        **kw: Any,
    ) -> dict[str, Any]:
        return self._configuration("preview", main, lores, buffer_count, **kw)

    def configure(self, config: dict[str, Any]) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is not None and stream["format"] not in FORMATS:
                raise RuntimeError(f"{name}: unsupported format {stream['format']}")
        lores, main = config.get("lores"), config["main"]
        if lores is not None:
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.platform == "vc4" and lores["format"] != "YUV420":
                raise RuntimeError("lores stream must be YUV")
        self.camera_config = config

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_request(self) -> EmulatedRequest:
        if not self.started or self._session is None or self.camera_config is None:
            raise RuntimeError("Camera is not running")
        if self.outstanding >= self.camera_config["buffer_count"]:
            raise EmulatedFault("all buffers are held by unreleased requests")
        image = self.device.next_image(self._session)
        if image is None:
            raise EmulatedFault("camera frontend has timed out")
        arrays = {"main": _to_format(image, self.camera_config["main"])}
        if self.camera_config["lores"] is not None:
            arrays["lores"] = _to_format(image, self.camera_config["lores"])
        self.outstanding += 1
        self.requests += 1
        return EmulatedRequest(self, arrays)

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.started = False
        if self._session is not None:
            self.device.close(self._session)
            self._session = None


def _to_format(bgr: np.ndarray, stream: dict[str, Any]) -> np.ndarray:
    """Pixels laid out as picamera2 delivers them: RGB888 is [B, G, R] in memory, BGR888 [R, G, B]."""
    width, height = stream["size"]
    image = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    fmt = stream["format"]
    if fmt == "RGB888":
        return image
    if fmt == "BGR888":
        return image[:, :, ::-1].copy()
    if fmt == "YUV420":  # planar, rows padded to a 64-byte stride, as picamera2 leaves them
        stride = -(-width // 64) * 64
        padded = cv2.copyMakeBorder(image, 0, 0, 0, stride - width, cv2.BORDER_REPLICATE)
        return cv2.cvtColor(padded, cv2.COLOR_BGR2YUV_I420)
    rgb = image[:, :, ::-1] if fmt == "XBGR8888" else image
    return np.dstack([rgb, np.full((height, width), 255, np.uint8)])
