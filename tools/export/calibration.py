"""Real face crops for calibration and fidelity, made exactly as the device makes them at run time.

Photos -> `edgeface.vision.detect.FaceDetector` (largest face) -> `edgeface.vision.landmarks.LandmarkRefiner` (face-mesh
keypoints; on by default on the device, `embedder.refine_landmarks`) -> `edgeface.vision.align.align_face` onto the
model's template -> colour order of the card -> `InputSpec.normalize`, as `edgeface.vision.encoder.FaceEncoder`
does. Calibrating on anything else (e.g. centre crops or another template) was measured to drop int8
fidelity from 0.99 to 0.86.

Photos are split deterministically into a calibration part and a held-out part by their index inside each
identity's sorted folder, so fidelity is never measured on crops the quantiser has seen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgeface_tools.export import ExportError

from edgeface.errors import ImageError
from edgeface.vision.align import align_face
from edgeface.vision.detect import FaceDetector
from edgeface.vision.landmarks import LandmarkRefiner
from edgeface.vision.modelcard import AlignSpec, InputSpec
from edgeface.vision.photos import identity_folders, read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PhotoSplit:
    """Photo paths with identity labels, divided into calibration and held-out parts."""

    calibration: tuple[Path, ...]
    held_out: tuple[Path, ...]

    @staticmethod
    def label_of(path: Path) -> str:
        return path.parent.name


def split_photos(root: str | Path, held_out_every: int = 2) -> PhotoSplit:
    """Per identity, photo k (0-based, sorted by name) is held out when k % held_out_every == 1.

    With the default of 2 the even-indexed photos calibrate and the odd-indexed ones measure fidelity.
    """
    if held_out_every < 2:
        raise ExportError(f"held_out_every must be >= 2, got {held_out_every}")
    try:
        folders = identity_folders(root)
    except ImageError as exc:
        raise ExportError(f"calibration set: {exc}") from exc
    calibration: list[Path] = []
    held_out: list[Path] = []
    for paths in folders.values():
        for k, path in enumerate(paths):
            (held_out if k % held_out_every == 1 else calibration).append(path)
    return PhotoSplit(tuple(calibration), tuple(held_out))


def aligned_crops(
    photo_paths: Sequence[Path],
    card_align: AlignSpec,
    input_spec: InputSpec,
    models_dir: str | Path = "models",
    refine_landmarks: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """(crops (N, H, W, 3) float32 normalised as the card says, labels (N,) str, skipped photo paths).

    A photo is skipped (and listed) when it cannot be read or the detector finds no face; the order of the
    crops follows `photo_paths`, so the result is deterministic for a given list.
    """
    height, width = input_spec.size
    crops: list[np.ndarray] = []
    labels: list[str] = []
    skipped: list[Path] = []
    detector = FaceDetector(models_dir)
    refiner = LandmarkRefiner(models_dir) if refine_landmarks else None
    try:
        for path in photo_paths:
            crop = _largest_face_crop(detector, refiner, Path(path), card_align, (height, width))
            if crop is None:
                skipped.append(Path(path))
                continue
            crops.append(crop)
            labels.append(PhotoSplit.label_of(Path(path)))
    finally:
        detector.close()
        if refiner is not None:
            refiner.close()
    if skipped:
        log.info("no usable face in %d of %d photos: %s", len(skipped), len(photo_paths), skipped)
    if not crops:
        raise ExportError(f"no face found in any of the {len(photo_paths)} calibration photos")
    batch = np.stack(crops)
    if input_spec.color == "RGB":
        batch = batch[..., ::-1]
    elif input_spec.color != "BGR":
        raise ExportError(f"input color must be 'RGB' or 'BGR', got {input_spec.color!r}")
    return input_spec.normalize(batch).astype(np.float32), np.asarray(labels), skipped


def _largest_face_crop(
    detector: FaceDetector,
    refiner: LandmarkRefiner | None,
    path: Path,
    spec: AlignSpec,
    size: tuple[int, int],
) -> np.ndarray | None:
    try:
        image = read_image(path)
    except ImageError as exc:
        log.warning("%s", exc)
        return None
    detections = detector.detect(image)
    if not detections:
        return None
    largest = max(detections, key=lambda d: d.bbox[2] * d.bbox[3])
    if refiner is not None:
        largest = refiner.refine(image, largest)
    return align_face(image, largest, spec, size)
