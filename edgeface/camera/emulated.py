"""The emulated camera as a FrameSource: plays a scripted Scene at a set fps, with ground truth per frame."""

from __future__ import annotations

import math

from edgeface.camera.base import EndOfStream, Pacer, SourceBase, Stamper
from edgeface.camera.scene import ActorTruth, Scene, SceneSpec
from edgeface.types import Frame


class EmulatedSource(SourceBase):
    """Frame `seq` shows the scene at time `seq / fps`, whatever the wall clock did, so runs are reproducible.

    `realtime=True` paces frames at `fps` like a camera; False renders as fast as they are read.
    At the end of the scene: `loop=True` starts it again, otherwise `read` raises EndOfStream.
    """

    def __init__(
        self,
        scene: Scene | SceneSpec,
        fps: float = 15.0,
        realtime: bool = True,
        loop: bool = False,
        name: str = "cam0",
    ) -> None:
        self.scene = scene if isinstance(scene, Scene) else Scene(scene)
        self.fps = fps
        self.loop = loop
        self.name = name
        self._pacer = Pacer(fps, realtime)
        self._stamper = Stamper(name)
        duration = self.scene.duration
        self.frame_count: int | None = None if math.isinf(duration) else max(1, math.ceil(duration * fps))
        self._next = 0
        self._closed = False

    def scene_time(self, seq: int) -> float:
        """The scene time shown by frame `seq` (loops wrap around)."""
        index = seq % self.frame_count if (self.loop and self.frame_count) else seq
        return index / self.fps

    def truth(self, seq: int) -> tuple[ActorTruth, ...]:
        """Who is where in frame `seq`: actor index, identity label, region and face box in pixels."""
        return self.scene.truth(self.scene_time(seq))

    def read(self, timeout: float) -> Frame | None:
        if self._closed:
            raise EndOfStream(f"camera {self.name}: emulated source is closed")
        if self.frame_count is not None and not self.loop and self._next >= self.frame_count:
            raise EndOfStream(f"camera {self.name}: scripted scene ended after {self.frame_count} frames")
        if not self._pacer.wait(timeout):
            return None
        seq = self._next
        image, _ = self.scene.render(self.scene_time(seq), seq)
        self._next += 1
        frame = self._stamper.frame(image)
        return frame

    def close(self) -> None:
        self._closed = True
