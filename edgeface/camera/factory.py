"""`open_source(spec)`: the one place that maps a CameraSpec onto a FrameSource."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from edgeface.camera.base import CameraError, FrameSource
from edgeface.camera.reconnect import Backoff, ReconnectingSource
from edgeface.camera.scene import ActorPhoto, SceneSpec, walk_in_scene
from edgeface.camera.spec import CameraSpec
from edgeface.errors import ImageError
from edgeface.vision.photos import identity_folders

log = logging.getLogger(__name__)


def open_source(
    spec: CameraSpec,
    *,
    capture_factory: Callable[[int | str, int], Any] | None = None,
    picamera2_factory: Callable[[int], Any] | None = None,
) -> FrameSource:
    """Open the camera `spec` describes.

    Live cameras with `spec.reconnect` come wrapped in a ReconnectingSource (opened on the first read,
    never raising for a transient failure); everything else is opened now and raises CameraError if it
    cannot be. A missing picamera2 module raises CameraError at once. The factories replace
    `cv2.VideoCapture` and `picamera2.Picamera2` (tests pass the emulated stand-ins).
    """

    if spec.kind == "picamera2" and picamera2_factory is None:
        from edgeface.camera.picamera_source import import_picamera2

        picamera2_factory = import_picamera2()  # a missing module is not transient: fail now

    def opener() -> FrameSource:
        return _open_direct(spec, capture_factory, picamera2_factory)

    if spec.reconnect and spec.live:
        backoff = Backoff(initial=spec.backoff_initial_s, maximum=spec.backoff_max_s)
        return ReconnectingSource(opener, spec.name, backoff, spec.stall_timeout_s)
    return opener()


def _open_direct(
    spec: CameraSpec,
    capture_factory: Callable[[int | str, int], Any] | None,
    picamera2_factory: Callable[[int], Any] | None,
) -> FrameSource:
    if spec.kind == "picamera2":
        from edgeface.camera.picamera_source import Picamera2Source

        camera = spec.device if isinstance(spec.device, int) else 0
        return Picamera2Source(
            camera, (spec.width, spec.height), spec.lores_size, spec.fps, spec.name, picamera2_factory
        )
    if spec.kind == "opencv":
        from edgeface.camera.opencv_source import OpenCVSource

        kind, target = _opencv_target(spec)
        return OpenCVSource(
            target, kind, name=spec.name, width=spec.width, height=spec.height, fps=spec.fps,
            capture_factory=capture_factory,
        )  # fmt: skip
    if spec.kind == "replay":
        from edgeface.camera.replay import ReplaySource

        return ReplaySource(
            spec.path or ".",
            spec.fps,
            spec.realtime,
            spec.loop,
            spec.name,
            (spec.width, spec.height),
            max_megapixels=spec.max_megapixels,
        )
    from edgeface.camera.emulated import EmulatedSource

    return EmulatedSource(_scene(spec), spec.fps, spec.realtime, spec.loop, spec.name)


def _opencv_target(spec: CameraSpec) -> tuple[str, int | str]:
    if spec.pipeline is not None:
        return "pipeline", spec.pipeline
    if spec.url is not None:
        return "url", spec.url
    if spec.path is not None:
        return "file", str(spec.path)
    device = spec.device if spec.device is not None else 0
    return "device", int(device) if isinstance(device, str) and device.isdigit() else device


def _scene(spec: CameraSpec) -> SceneSpec:
    """Each identity folder's first photo walking in, whole (no face boxes)."""
    try:
        folders = identity_folders(spec.faces or ".")
    except ImageError as exc:
        raise CameraError(f"camera {spec.name}: {exc}") from exc
    people = {name: (ActorPhoto(files[0]),) for name, files in folders.items()}
    base = SceneSpec(width=spec.width, height=spec.height, seed=spec.seed)
    return walk_in_scene(people, scales=(0.5, 0.8), base=base)
