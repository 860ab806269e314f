"""Home Assistant benchmark: what discovery sends per door (messages, bytes) as the gallery grows, and the
opt-in face snapshot (JPEG bytes and encode time) on real aligned crops from faces5.

    python bench/homeassistant.py --quick                               # 10, 100 identities; 20 photos
    python bench/homeassistant.py --out bench/results/homeassistant.json  # 10, 100, 1000; every photo
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from _common import ROOT, emit, percentiles

log = logging.getLogger("bench.homeassistant")


def discovery_size(n: int) -> dict[str, float | int]:
    from edgeface.mqtt.discovery import Discovery, DoorInfo
    from edgeface.mqtt.payloads import encode
    from edgeface.mqtt.topics import DeviceTopics
    from edgeface.types import Identity

    discovery = Discovery(DeviceTopics("edgeface", "door-1"), DoorInfo("facerec128", "0.0.0"))
    people = [Identity(f"person-{i:05d}", f"Person {i}") for i in range(n)]
    started = time.perf_counter()
    entities = discovery.entities(people, snapshot=True)
    sizes = [len(discovery.topic(e)) + len(encode(e.config)) for e in entities]
    build_ms = (time.perf_counter() - started) * 1e3
    return {"identities": n, "messages": len(entities), "bytes": sum(sizes), "build_ms": round(build_ms, 2)}


def snapshot_costs(faces: Path, limit: int | None, max_px: int, max_bytes: int) -> dict[str, object]:
    from edgeface.mqtt.snapshot import encode_snapshot
    from edgeface.util.paths import default_models_dir
    from edgeface.vision.detect import FaceDetector
    from edgeface.vision.embed import Embedder
    from edgeface.vision.encoder import FaceEncoder
    from edgeface.vision.landmarks import LandmarkRefiner
    from edgeface.vision.photos import read_image

    models = default_models_dir()
    encoder = FaceEncoder(
        FaceDetector(models), Embedder(models / "facerec128.int8.json"), LandmarkRefiner(models)
    )
    photos = sorted(p for p in faces.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    sizes, times, refused = [], [], 0
    for photo in photos:
        image = read_image(photo)
        detections = encoder.detector.detect(image)
        if not detections:
            continue
        crop = encoder.crop(image, max(detections, key=lambda d: d.bbox[2] * d.bbox[3]))
        started = time.perf_counter()
        data = encode_snapshot(crop, max_px, max_bytes)
        times.append((time.perf_counter() - started) * 1e3)
        if data is None:
            refused += 1
        else:
            sizes.append(len(data))
    encoder.close()
    return {"crop_px": int(crop.shape[0]), "jpeg_bytes": percentiles(sizes), "encode_ms": percentiles(times),
            "over_cap": refused}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--faces", type=Path, default=Path(os.environ.get("EDGEFACE_FACES",
                                                                          ROOT.parent / "shared/data/faces5")))  # fmt: skip
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    sizes = (10, 100) if args.quick else (10, 100, 1000)
    limit = 20 if args.quick else None
    params = {"quick": args.quick, "identities": list(sizes), "faces": str(args.faces), "photos": limit or "all",
              "snapshot_px": 112, "snapshot_max_bytes": 16384}  # fmt: skip
    results = {
        "discovery": [discovery_size(n) for n in sizes],
        "snapshot": snapshot_costs(args.faces, limit, 112, 16384),
    }
    emit("homeassistant", params, results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
