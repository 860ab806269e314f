"""A scripted scene of real face photos on a generated background, with ground truth for every frame.

Actors enter and leave at set times, move between two positions and change size (walking towards the
camera); the camera adds lighting changes, Gaussian blur, sensor noise and an optional occluder.
Rendering is a pure function of (scene, time): the same seed gives the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgeface.errors import ConfigError, ImageError
from edgeface.types import Box
from edgeface.vision.photos import read_image

if TYPE_CHECKING:
    from edgeface.vision.detect import Detects

NOISE_FIELDS = 6


@dataclass(frozen=True, slots=True)
class ActorPhoto:
    """A photo of one person; `face_box` (x, y, w, h in photo pixels) makes the scene face-centred."""

    path: Path
    face_box: Box | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """One person in the scene. Positions are the face (or photo) centre as fractions of the frame;
    scales are the face height (or whole-photo height when no face box is known) over the frame height."""

    label: str
    photos: tuple[ActorPhoto, ...]
    enter: float
    exit: float
    start: tuple[float, float] = (0.5, 0.5)
    end: tuple[float, float] = (0.5, 0.5)
    start_scale: float = 0.3
    end_scale: float = 0.3
    photo_period: float = 0.0  # seconds per photo; 0 shows the first photo only

    def __post_init__(self) -> None:
        if not self.photos:
            raise ConfigError(f"scene actor {self.label!r}: needs at least one photo")
        if self.exit <= self.enter:
            raise ConfigError(
                f"scene actor {self.label!r}: exit ({self.exit}) must be after enter ({self.enter})"
            )
        if min(self.start_scale, self.end_scale) <= 0:
            raise ConfigError(f"scene actor {self.label!r}: scales must be > 0")


@dataclass(frozen=True, slots=True)
class Occluder:
    """A flat rectangle (fractions of the frame: x, y, w, h) in front of everything between two times."""

    rect: tuple[float, float, float, float]
    enter: float = 0.0
    exit: float = math.inf
    color: tuple[int, int, int] = (40, 40, 40)


@dataclass(frozen=True, slots=True)
class SceneSpec:
    actors: tuple[Actor, ...] = ()
    width: int = 640
    height: int = 480
    duration: float | None = None  # None: until the last actor leaves (endless with no actors)
    seed: int = 0
    context: float = 0.7  # photo kept around a known face box, in face sizes on each side
    blur_sigma: tuple[float, float] = (0.0, 0.0)  # per-frame Gaussian blur sigma, uniform in [lo, hi]
    noise_sigma: float = 0.0  # Gaussian sensor noise, grey levels
    brightness: float = 1.0  # base gain
    lighting_amplitude: float = 0.0  # gain varies by +- this fraction ...
    lighting_period: float = 4.0  # ... with this period in seconds
    occluder: Occluder | None = None

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ConfigError(f"scene size must be at least 32x32, got {self.width}x{self.height}")
        if self.blur_sigma[0] < 0 or self.blur_sigma[1] < self.blur_sigma[0]:
            raise ConfigError(f"scene blur_sigma must be 0 <= lo <= hi, got {self.blur_sigma}")


@dataclass(frozen=True, slots=True)
class ActorTruth:
    """Where an actor is in one frame: pasted region and face box in frame pixels (face None if unknown)."""

    actor: int
    label: str
    photo: Path
    region: Box
    face: Box | None
    occluded: float = 0.0  # fraction of the face (or region) hidden by the occluder


@dataclass(slots=True)
class _Cache:
    photos: dict[Path, np.ndarray] = field(default_factory=dict)


class Scene:
    """`render(t) -> (BGR image, truths)`; `truth(t)` alone is cheap (no pixels)."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        self.background = make_background(spec.width, spec.height, spec.seed)
        self._cache = _Cache()
        self._noise: np.ndarray | None = None

    @property
    def duration(self) -> float:
        if self.spec.duration is not None:
            return self.spec.duration
        return max((a.exit for a in self.spec.actors), default=math.inf)

    def truth(self, t: float) -> tuple[ActorTruth, ...]:
        return tuple(p[0] for p in self._placements(t))

    def render(self, t: float, index: int = 0) -> tuple[np.ndarray, tuple[ActorTruth, ...]]:
        """Pixels at scene time t; `index` only seeds this frame's noise and blur draws."""
        spec = self.spec
        image = self.background.copy()
        placements = self._placements(t)
        for _, patch, (x0, y0) in placements:
            _paste(image, patch, x0, y0)
        rng = np.random.default_rng((spec.seed, index))
        occluder = spec.occluder
        if occluder is not None and occluder.enter <= t < occluder.exit:
            x, y, w, h = _occluder_px(occluder, spec.width, spec.height)
            image[y : y + h, x : x + w] = occluder.color
        phase = math.sin(2 * math.pi * t / spec.lighting_period)
        gain = spec.brightness * (1 + spec.lighting_amplitude * phase)
        if abs(gain - 1.0) > 1e-3:
            image = cv2.convertScaleAbs(image, alpha=gain)  # saturating uint8 scale
        sigma = float(rng.uniform(*spec.blur_sigma)) if spec.blur_sigma[1] > 0 else 0.0
        if sigma > 0.05:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
        if spec.noise_sigma > 0:
            image = self._add_noise(image, rng)
        return image, tuple(p[0] for p in placements)

    def _add_noise(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sensor noise from a small bank of pre-drawn fields, picked and flipped per frame (fast)."""
        if self._noise is None:
            bank_rng = np.random.default_rng((self.spec.seed, 2**32 - 1))
            fields = bank_rng.normal(0.0, self.spec.noise_sigma, (NOISE_FIELDS, *image.shape))
            self._noise = np.clip(fields, -127, 127).astype(np.int16)
        field = self._noise[int(rng.integers(NOISE_FIELDS))]
        flip = int(rng.integers(4))
        field = field[:: -1 if flip & 1 else 1, :: -1 if flip & 2 else 1]
        return cv2.add(image, np.ascontiguousarray(field), dtype=cv2.CV_8U)

    def _placements(self, t: float) -> list[tuple[ActorTruth, np.ndarray, tuple[int, int]]]:
        result = []
        for index, actor in enumerate(self.spec.actors):
            if actor.enter <= t < actor.exit:
                result.append(self._place(index, actor, t))
        return result

    def _place(self, index: int, actor: Actor, t: float) -> tuple[ActorTruth, np.ndarray, tuple[int, int]]:
        spec = self.spec
        k = (t - actor.enter) / (actor.exit - actor.enter)
        cx = (actor.start[0] + k * (actor.end[0] - actor.start[0])) * spec.width
        cy = (actor.start[1] + k * (actor.end[1] - actor.start[1])) * spec.height
        target_h = (actor.start_scale + k * (actor.end_scale - actor.start_scale)) * spec.height
        slot = int((t - actor.enter) / actor.photo_period) if actor.photo_period > 0 else 0
        photo = actor.photos[slot % len(actor.photos)]
        pixels = self._photo(photo.path)
        crop, face = _crop_around_face(pixels, photo.face_box, spec.context)
        ref_h = face[3] if face is not None else crop.shape[0]
        scale = target_h / max(ref_h, 1.0)
        pw, ph = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
        patch = cv2.resize(crop, (pw, ph), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if face is not None:
            fx, fy, fw, fh = (v * scale for v in face)
            x0, y0 = round(cx - fx - fw / 2), round(cy - fy - fh / 2)
            face_box: Box | None = (x0 + fx, y0 + fy, fw, fh)
        else:
            x0, y0 = round(cx - pw / 2), round(cy - ph / 2)
            face_box = None
        region = _clip((x0, y0, pw, ph), spec.width, spec.height)
        hidden = _occlusion(spec, t, face_box or region)
        truth = ActorTruth(index, actor.label, photo.path, region, face_box, hidden)
        return truth, patch, (x0, y0)

    def _photo(self, path: Path) -> np.ndarray:
        if path not in self._cache.photos:
            self._cache.photos[path] = read_image(path)
        return self._cache.photos[path]


def make_background(width: int, height: int, seed: int) -> np.ndarray:
    """A plausible entrance: a vertical wall gradient, a door frame and a few shelves, deterministic."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.uniform(90, 200, 3), rng.uniform(50, 150, 3)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    image = np.ascontiguousarray(
        np.broadcast_to(top * (1 - ramp) + bottom * ramp, (height, width, 3)), np.float32
    )
    door_x = int(rng.uniform(0.15, 0.35) * width)
    door_w = int(0.45 * width)
    cv2.rectangle(
        image, (door_x, int(0.05 * height)), (door_x + door_w, height), rng.uniform(30, 90, 3).tolist(), 12
    )
    for _ in range(4):
        x, y = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        w, h = int(rng.uniform(0.05, 0.2) * width), int(rng.uniform(0.02, 0.08) * height)
        cv2.rectangle(image, (x, y), (x + w, y + h), rng.uniform(40, 220, 3).tolist(), -1)
    texture = cv2.resize(
        rng.normal(0, 6, (height // 8 + 1, width // 8 + 1)).astype(np.float32), (width, height)
    )
    return (image + texture[:, :, None]).clip(0, 255).astype(np.uint8)


def _crop_around_face(pixels: np.ndarray, face: Box | None, context: float) -> tuple[np.ndarray, Box | None]:
    """The photo cut to the face plus `context` face sizes each side; face box relative to the crop."""
    if face is None:
        return pixels, None
    h, w = pixels.shape[:2]
    fx, fy, fw, fh = face
    x0, y0 = max(0, int(fx - context * fw)), max(0, int(fy - context * fh))
    x1, y1 = min(w, math.ceil(fx + fw + context * fw)), min(h, math.ceil(fy + fh + context * fh))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ImageError(f"face box {face} lies outside the {w}x{h} photo")
    return pixels[y0:y1, x0:x1], (fx - x0, fy - y0, fw, fh)


def _paste(image: np.ndarray, patch: np.ndarray, x0: int, y0: int, feather: int = 4) -> None:
    """Blend `patch` at (x0, y0) with softened edges, clipped to the image."""
    h, w = image.shape[:2]
    ph, pw = patch.shape[:2]
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
    if ix1 <= ix0 or iy1 <= iy0:
        return
    ramp_x = np.minimum(np.arange(pw) + 1, np.arange(pw)[::-1] + 1) / feather
    ramp_y = np.minimum(np.arange(ph) + 1, np.arange(ph)[::-1] + 1) / feather
    alpha = np.clip(np.minimum(ramp_y[:, None], ramp_x[None, :]), 0, 1).astype(np.float32)[:, :, None]
    src = patch[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0].astype(np.float32)
    a = alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    dst = image[iy0:iy1, ix0:ix1].astype(np.float32)
    image[iy0:iy1, ix0:ix1] = (src * a + dst * (1 - a)).astype(np.uint8)


def _clip(box: Box, width: int, height: int) -> Box:
    x, y, w, h = box
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
    return (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))


def _occluder_px(occluder: Occluder, width: int, height: int) -> tuple[int, int, int, int]:
    fx, fy, fw, fh = occluder.rect
    return round(fx * width), round(fy * height), round(fw * width), round(fh * height)


def _occlusion(spec: SceneSpec, t: float, box: Box) -> float:
    occluder = spec.occluder
    if occluder is None or not occluder.enter <= t < occluder.exit or box[2] * box[3] <= 0:
        return 0.0
    ox, oy, ow, oh = _occluder_px(occluder, spec.width, spec.height)
    x, y, w, h = box
    ix = max(0.0, min(x + w, ox + ow) - max(x, ox))
    iy = max(0.0, min(y + h, oy + oh) - max(y, oy))
    return ix * iy / (w * h)


def locate_faces(paths: Sequence[Path], finder: Detects) -> tuple[ActorPhoto, ...]:
    """ActorPhotos with the largest detected face boxed; photos where no face is found are left out."""
    photos = []
    for path in paths:
        found = finder.detect(read_image(path))
        if found:
            best = max(found, key=lambda d: d.bbox[2] * d.bbox[3])
            x, y, w, h = (float(v) for v in best.bbox)
            photos.append(ActorPhoto(Path(path), (x, y, w, h)))
    return tuple(photos)


def walk_in_scene(
    people: Mapping[str, Sequence[ActorPhoto]],
    *,
    seconds_each: float = 4.0,
    gap: float = 1.0,
    start: float = 0.5,
    scales: tuple[float, float] = (0.18, 0.32),
    base: SceneSpec | None = None,
) -> SceneSpec:
    """One person after another walks in from a side and towards the camera (the face grows).

    `base` carries the camera options (size, seed, blur, noise, lighting, occluder); its actors are replaced.
    """
    actors = []
    t = start
    for i, (label, photos) in enumerate(people.items()):
        side = 0.3 if i % 2 == 0 else 0.7
        actors.append(
            Actor(label, tuple(photos), t, t + seconds_each, (side, 0.45), (0.5, 0.5), scales[0], scales[1])
        )
        t += seconds_each + gap
    return replace(base or SceneSpec(), actors=tuple(actors), duration=t)
