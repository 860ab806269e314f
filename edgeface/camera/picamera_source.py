"""Raspberry Pi camera through picamera2 (libcamera), imported only when this source is opened.

A main stream (for crops) and, where the ISP allows, a low-resolution `lores` stream (for detection) come
from the same request. Format RGB888 is [B, G, R] in memory, which is OpenCV's BGR, so no conversion is
needed. Pi 4 and older (VC4) only give YUV420 on lores; that is converted. Each request is released as
soon as its pixels are copied out, so the camera never runs out of buffers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from edgeface.camera.base import CameraError, SourceBase, Stamper, ThreadedReader
from edgeface.types import Frame

log = logging.getLogger(__name__)

Picamera2Factory = Callable[[int], Any]


def import_picamera2() -> Picamera2Factory:
    """The real `picamera2.Picamera2` class, or a CameraError that says how to get it."""
    try:
        module = importlib.import_module("picamera2")
    except ModuleNotFoundError as exc:
        raise CameraError(
            "picamera2 is not installed: on Raspberry Pi OS run `sudo apt install python3-picamera2` and "
            "create the venv with --system-site-packages, or `pip install edgeface[pi]` "
            f"(it needs libcamera's Python bindings, which only Raspberry Pi OS ships) [{exc}]"
        ) from exc
    factory: Picamera2Factory = module.Picamera2  # the module is imported by name, so mypy cannot see it
    return factory


class Picamera2Source(SourceBase):
    """`read(timeout)` returns a `DualFrame`: `image` = main stream, `lores` = detection stream (or None)."""

    def __init__(
        self,
        camera_num: int = 0,
        size: tuple[int, int] = (1280, 960),
        lores: tuple[int, int] | None = (640, 480),
        fps: float = 15.0,
        name: str = "cam0",
        factory: Picamera2Factory | None = None,
        buffer_count: int = 4,
    ) -> None:
        self.name = name
        self._stamper = Stamper(name)
        self._lores_size = lores
        make = factory if factory is not None else import_picamera2()
        try:
            self._camera = make(camera_num)
        except Exception as exc:
            raise CameraError(
                f"camera {name}: cannot open Raspberry Pi camera {camera_num} ({exc}); check the ribbon "
                "cable and that `rpicam-hello --list-cameras` lists it"
            ) from exc
        try:
            self.lores_format = self._configure(size, lores, fps, buffer_count)
            self._camera.start()
        except Exception as exc:
            self._shutdown()
            raise CameraError(f"camera {name}: cannot configure/start picamera2 ({exc})") from exc
        self._reader = ThreadedReader(self._grab, name, maxsize=2, drop_oldest=True, on_exit=self._shutdown)

    def _configure(
        self, size: tuple[int, int], lores: tuple[int, int] | None, fps: float, buffers: int
    ) -> str | None:
        """Try lores as RGB888 (Pi 5), then YUV420 (Pi 4 and older), then main stream only."""
        main = {"size": tuple(size), "format": "RGB888"}
        controls = {"FrameRate": float(fps)}
        choices: list[str | None] = ["RGB888", "YUV420", None] if lores is not None else [None]
        last: Exception | None = None
        for fmt in choices:
            lores_stream = None if fmt is None else {"size": tuple(lores or size), "format": fmt}
            config = self._camera.create_video_configuration(
                main=main, lores=lores_stream, controls=controls, buffer_count=buffers
            )
            try:
                self._camera.configure(config)
            except Exception as exc:  # picamera2 raises RuntimeError for unsupported layouts
                log.info("camera %s: lores %s not accepted (%s)", self.name, fmt, exc)
                last = exc
                continue
            if fmt is None and lores is not None:
                log.warning("camera %s: no lores stream (%s); detecting on the main stream", self.name, last)
            return fmt
        raise CameraError(f"camera {self.name}: no stream configuration accepted ({last})")

    def _grab(self) -> Frame:
        request = self._camera.capture_request()
        try:
            main = request.make_array("main")
            lores = request.make_array("lores") if self.lores_format is not None else None
        finally:
            request.release()
        image = _three_channels(main)
        if lores is not None and self.lores_format == "YUV420" and self._lores_size is not None:
            # (h * 3/2, stride) planar I420 with any row padding kept: convert, then cut the padding
            lores = cv2.cvtColor(lores, cv2.COLOR_YUV2BGR_I420)[:, : self._lores_size[0]]
        return self._stamper.frame(image, lores)

    @property
    def dropped(self) -> int:
        return self._reader.dropped

    def read(self, timeout: float) -> Frame | None:
        return self._reader.read(timeout)

    def close(self) -> None:
        self._reader.stop()

    def _shutdown(self) -> None:
        for step in (self._camera.stop, self._camera.close):
            try:
                step()
            except Exception as exc:
                log.warning("camera %s: %s failed while closing: %s", self.name, step.__name__, exc)


def _three_channels(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 4:  # XRGB8888 layout, [B, G, R, X] in memory
        return np.ascontiguousarray(image[:, :, :3])
    return image
