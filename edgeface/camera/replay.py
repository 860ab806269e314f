"""Replay of an image folder (sorted by name) or a video file at a set fps, real time or as fast as read."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edgeface.camera.base import CameraError, CameraStatus, EndOfStream, Pacer, SourceBase, Stamper
from edgeface.errors import ImageError
from edgeface.types import Frame
from edgeface.util.logsafe import printable
from edgeface.vision.photos import DEFAULT_MAX_MEGAPIXELS, image_files, max_pixels_of, read_image

log = logging.getLogger(__name__)


class ReplaySource(SourceBase):
    """Frames from `path` (folder of images or a video file). `size=(w, h)` fits every frame into
    that size, keeping its aspect ratio (black bars), so a folder of mixed photos plays like one camera.

    `realtime=True` delivers one frame per 1/fps s; False delivers them as fast as `read` is called.
    At the end: `loop=True` starts again, otherwise EndOfStream.

    An image that cannot be read or decoded, or is above `max_megapixels`, is skipped with a warning and
    counted (`skipped`, and `failures` in `status()`); only a folder with no readable image at all is an
    error, so one corrupt file never ends the daemon.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 15.0,
        realtime: bool = True,
        loop: bool = False,
        name: str = "cam0",
        size: tuple[int, int] | None = None,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    ) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels_of(max_megapixels)
        self.frames = 0
        self.skipped = 0
        self.last_error: str | None = None
        self._ended = False
        self.name = name
        self.loop = loop
        self.size = size
        self._pacer = Pacer(fps, realtime)
        self._stamper = Stamper(name)
        self._files: list[Path] = []
        self._video: cv2.VideoCapture | None = None
        self._index = 0
        if self.path.is_dir():
            self._files = image_files(self.path)
            if not self._files:
                raise CameraError(f"camera {name}: replay folder {self.path} holds no images")
        elif self.path.is_file():
            self._video = self._open_video()
        else:
            raise CameraError(f"camera {name}: replay path {self.path} is neither a folder nor a file")

    def _open_video(self) -> cv2.VideoCapture:
        video = cv2.VideoCapture(str(self.path))
        if not video.isOpened():
            video.release()
            raise CameraError(f"camera {self.name}: cannot decode video {self.path}")
        return video

    def _next_image(self) -> np.ndarray | None:
        if self._video is not None:
            ok, image = self._video.read()
            if ok and image is not None:
                return image
            if not self.loop:
                return None
            self._video.release()
            self._video = self._open_video()
            ok, image = self._video.read()
            return image if ok else None
        for _ in range(len(self._files)):  # skip unreadable images, at most one pass of the folder
            if self._index >= len(self._files):
                if not self.loop:
                    return None
                self._index = 0
            path = self._files[self._index]
            self._index += 1
            try:
                return read_image(path, self.max_pixels)
            except ImageError as exc:
                self.skipped += 1
                self.last_error = printable(str(exc), 300)
                log.warning(
                    "camera %s: skipped %s (%d skipped so far)", self.name, self.last_error, self.skipped
                )
        if self._index >= len(self._files) and not self.loop:
            return None
        raise CameraError(f"camera {self.name}: no readable image in {self.path} ({self.last_error})")

    def status(self) -> CameraStatus:
        """Skipped images count as failures; `last_error` names the last one skipped."""
        return CameraStatus(
            self.name, not self._ended, self.frames, 0, self.skipped, self.last_error, dropped=0
        )

    def read(self, timeout: float) -> Frame | None:
        if not self._pacer.wait(timeout):
            return None
        image = self._next_image()
        if image is None:
            self._ended = True
            if self.frames == 0 and self.skipped:
                raise CameraError(f"camera {self.name}: no readable image in {self.path} ({self.last_error})")
            raise EndOfStream(f"camera {self.name}: replay of {self.path} has ended")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if self.size is not None and (image.shape[1], image.shape[0]) != self.size:
            image = fit(image, self.size)
        self.frames += 1
        return self._stamper.frame(image)

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit inside `size` (w, h) with its aspect ratio kept, centred on black."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    new_w, new_h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    resized = cv2.resize(
        image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    canvas = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = resized
    return canvas
