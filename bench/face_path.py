"""Face path benchmark (docs/design.md §10): what each step of the one face path costs per face, and what the
photo detector cascade finds.

- Per face, side by side in one run (the variants interleaved photo by photo, so load hits them alike):
  align on BlazeFace's coarse keypoints vs refine with the face mesh first, and one embedder call vs flip
  averaging (the crop and its mirror image).
- Detection on the photos as they are and on tight crops of them (each photo cut to its face box grown by
  `--tight` of its size, as ID photos and cropped portraits are): the camera's single detector vs the photo
  cascade (full range, short range, then each on bordered copies), with the rate, the cost per photo and
  which stage of the cascade found the face.

    python bench/face_path.py [--folders ../shared/data/faces5] [--out bench/results/face_path.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from _common import emit, percentiles

from edgeface.config import parse_config
from edgeface.daemon.parts import build_encoder
from edgeface.types import Detection
from edgeface.vision.align import align_face
from edgeface.vision.detect import Detects
from edgeface.vision.encoder import CascadeDetector, FaceEncoder
from edgeface.vision.photos import identity_folders, read_image

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces5"


def tight_crop(image: np.ndarray, detection: Detection, grow: float) -> np.ndarray:
    """The face box grown by `grow` of its size (half on each side), clipped to the image."""
    x, y, w, h = detection.bbox
    dx, dy = w * grow / 2, h * grow / 2
    x0, y0 = max(0, round(x - dx)), max(0, round(y - dy))
    x1, y1 = min(image.shape[1], round(x + w + dx)), min(image.shape[0], round(y + h + dy))
    return np.ascontiguousarray(image[y0:y1, x0:x1])


P = ParamSpec("P")
T = TypeVar("T")


def timed(call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[T, float]:
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return result, (time.perf_counter() - started) * 1e3


def face_costs(
    encoder: FaceEncoder, faces: list[tuple[np.ndarray, Detection]], repeats: int
) -> dict[str, Any]:
    """ms per face of each step, every variant run on the same face before moving to the next face."""
    refiner, embedder = encoder.refiner, encoder.embedder
    assert refiner is not None
    samples: dict[str, list[float]] = {k: [] for k in ("refine", "align", "embed_once", "embed_flip")}
    for _ in range(repeats):
        for image, detection in faces:
            refined, ms = timed(refiner.refine, image, detection)
            samples["refine"].append(ms)
            crop, ms = timed(align_face, image, refined, embedder.align, embedder.crop_size)
            samples["align"].append(ms)
            _, ms = timed(embedder.embed, [crop])
            samples["embed_once"].append(ms)
            _, ms = timed(embedder.embed, [crop, np.ascontiguousarray(crop[:, ::-1])])
            samples["embed_flip"].append(ms)
    stats = {k: percentiles(v) for k, v in samples.items()}
    once, flip = stats["embed_once"]["median"], stats["embed_flip"]["median"]
    coarse = stats["align"]["median"] + once
    return {
        "per_face_ms": stats,
        "flip_extra_ms": flip - once,
        "flip_cost_ratio": flip / once,
        "refine_extra_ms": stats["refine"]["median"],
        "face_ms_coarse_no_flip": coarse,
        "face_ms_refined_flip": stats["refine"]["median"] + stats["align"]["median"] + flip,
    }


def detection_rates(detectors: Mapping[str, Detects], images: list[np.ndarray]) -> dict[str, Any]:
    out = {}
    for name, detector in detectors.items():
        found = 0
        costs: list[float] = []
        stages: Counter[str] = Counter()
        for image in images:
            detections, ms = timed(detector.detect, image)
            costs.append(ms)
            if detections:
                found += 1
                stage = getattr(detector, "last_stage", None)
                if stage is not None:
                    stages[stage] += 1
        out[name] = {
            "photos": len(images),
            "found": found,
            "rate": found / len(images),
            "ms_per_photo": percentiles(costs),
            **({"found_by_stage": dict(stages)} if stages else {}),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=Path, default=FACES)
    parser.add_argument("--tight", type=float, default=0.05, help="face box growth for tight crops")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the faces for the cost")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    config = parse_config({"embedder": {"num_threads": args.threads}})
    photo = build_encoder(config, photos=True)
    camera = build_encoder(config)
    assert isinstance(photo.detector, CascadeDetector)
    paths = [p for files in identity_folders(args.folders).values() for p in files]
    images = [read_image(p) for p in paths]
    faces: list[tuple[np.ndarray, Detection]] = []
    tight: list[np.ndarray] = []
    for image in images:
        detections = photo.detector.detect(image)
        if detections:
            best = max(detections, key=lambda d: d.bbox[2] * d.bbox[3])
            faces.append((image, best))
            tight.append(tight_crop(image, best, args.tight))
    detectors = {"camera_detector": camera.detector, "photo_cascade": photo.detector}
    results = {
        "face_cost": face_costs(photo, faces, args.repeats),
        "detection_photos": detection_rates(detectors, images),
        "detection_tight_crops": detection_rates(detectors, tight),
    }
    params = {
        "folders": str(args.folders),
        "photos": len(paths),
        "tight_growth": args.tight,
        "repeats": args.repeats,
        "threads": args.threads,
        "embedder": photo.embedder.card.name,
        "camera_detector": config.detector.model,
        "note": "tight crops are made from the photos the cascade found a face in",
    }
    emit("face_path", params, results, args.out)
    photo.close()
    camera.close()


if __name__ == "__main__":
    main()
