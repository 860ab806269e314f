"""Peer benchmark: ageitgey face_recognition 1.3.0 (dlib HOG detector + 128-d ResNet encoder).

Accuracy on faces5 under edgeface's protocol (``_common.split_80_20``, seeds 0..9): top-1 identification with
(a) per-photo nearest neighbour, Euclidean on the raw 128-d encodings (as the library does) and (b) one
aggregated vector per identity (mean of L2-normalised encodings, renormalised; cosine). Photos where the
default detector (HOG, upsample 1) finds no face count as errors and are also reported as the detection rate.
A photo with several faces is represented by its largest face.

Speed: the full library pipeline (``face_locations`` HOG + ``face_encodings``) on synthetic 640x480 frames
with 0, 1 and 3 faces (``_common.make_frames``), ms/frame over repeats.

    python bench/peer_face_recognition.py --quick
    python bench/peer_face_recognition.py --out bench/results/peer_face_recognition.json
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import ROOT, emit, list_identities, make_frames, package_version, percentiles, split_80_20

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("bench.peer_face_recognition")

DEFAULT_FACES = Path(os.environ.get("EDGEFACE_FACES", ROOT.parent / "shared" / "data" / "faces5"))
FACE_COUNTS = (0, 1, 3)


@dataclass(frozen=True, slots=True)
class Photo:
    """One photo as face_recognition sees it."""

    path: Path
    identity: str
    faces: int
    encoding: np.ndarray | None  # 128-d encoding of the largest face, None when no face was found


def import_peer() -> tuple[Any, dict[str, Any]]:
    """Import face_recognition (and dlib); raises ImportError with the install command when missing."""
    try:
        import dlib
        import face_recognition
    except ImportError as exc:
        raise ImportError(
            f"{exc}: install the peer with `pip install dlib-bin face-recognition-models` and "
            "`pip install --no-deps face_recognition==1.3.0` (or dlib from source)"
        ) from exc
    info = {
        "face_recognition": package_version("face_recognition"),
        "face_recognition_models": package_version("face_recognition_models"),
        "dlib": dlib.__version__,
        "dlib_dist": "dlib-bin" if package_version("dlib-bin") else "dlib",
        "dlib_use_avx": bool(getattr(dlib, "USE_AVX_INSTRUCTIONS", False)),
        "dlib_use_blas": bool(getattr(dlib, "DLIB_USE_BLAS", False)),
    }
    return face_recognition, info


def encode_photo(fr: Any, path: Path, identity: str, upsample: int) -> Photo:
    image = fr.load_image_file(str(path))
    boxes = fr.face_locations(image, number_of_times_to_upsample=upsample, model="hog")
    if not boxes:
        return Photo(path, identity, 0, None)
    largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))  # (top, right, bottom, left)
    encoding = fr.face_encodings(image, known_face_locations=[largest])[0]
    return Photo(path, identity, len(boxes), encoding)


def identify_nn(gallery: list[Photo], probe: Photo) -> str | None:
    """(a) nearest gallery photo by Euclidean distance on raw encodings."""
    import numpy as np

    usable = [(g.identity, g.encoding) for g in gallery if g.encoding is not None]
    if probe.encoding is None or not usable:
        return None
    distances = np.linalg.norm(np.stack([encoding for _, encoding in usable]) - probe.encoding, axis=1)
    return usable[int(np.argmin(distances))][0]


def identity_means(gallery: list[Photo]) -> dict[str, np.ndarray]:
    """(b) mean of L2-normalised encodings per identity, renormalised."""
    import numpy as np

    means: dict[str, np.ndarray] = {}
    for identity in sorted({g.identity for g in gallery}):
        vecs = [
            g.encoding / np.linalg.norm(g.encoding)
            for g in gallery
            if g.identity == identity and g.encoding is not None
        ]
        if vecs:
            mean = np.mean(vecs, axis=0)
            means[identity] = mean / np.linalg.norm(mean)
    return means


def identify_mean(means: dict[str, np.ndarray], probe: Photo) -> str | None:
    import numpy as np

    if probe.encoding is None or not means:
        return None
    names = list(means)
    scores = np.stack([means[n] for n in names]) @ (probe.encoding / np.linalg.norm(probe.encoding))
    return names[int(np.argmax(scores))]


def evaluate_seed(photos: dict[Path, Photo], files: dict[str, list[Path]], seed: int) -> dict[str, Any]:
    gallery_files, probe_files = split_80_20(files, seed)
    gallery = [photos[p] for ps in gallery_files.values() for p in ps]
    probes = [photos[p] for ps in probe_files.values() for p in ps]
    means = identity_means(gallery)
    nn_hits = sum(identify_nn(gallery, p) == p.identity for p in probes)
    mean_hits = sum(identify_mean(means, p) == p.identity for p in probes)
    detected = [p for p in probes if p.encoding is not None]
    return {
        "seed": seed,
        "probes": len(probes),
        "gallery": len(gallery),
        "gallery_without_face": sum(g.encoding is None for g in gallery),
        "probes_without_face": len(probes) - len(detected),
        "top1_nn_euclidean": nn_hits / len(probes),
        "top1_mean_cosine": mean_hits / len(probes),
        "top1_nn_euclidean_detected_only": nn_hits / len(detected) if detected else None,
        "top1_mean_cosine_detected_only": mean_hits / len(detected) if detected else None,
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": min(values),
        "max": max(values),
    }


def all_photos_summary(photos: dict[Path, Photo]) -> dict[str, Any]:
    """Detection over every photo, leave-one-out nearest neighbour, and exact duplicate files."""
    items = list(photos.values())
    loo_hits = sum(identify_nn([q for q in items if q is not p], p) == p.identity for p in items)
    digests: dict[str, int] = {}
    for p in items:
        digest = hashlib.sha256(p.path.read_bytes()).hexdigest()
        digests[digest] = digests.get(digest, 0) + 1
    return {
        "photos": len(items),
        "detected": sum(p.encoding is not None for p in items),
        "detection_rate": sum(p.encoding is not None for p in items) / len(items),
        "multi_face_photos": sum(p.faces > 1 for p in items),
        "no_face_photos": sorted(f"{p.identity}/{p.path.name}" for p in items if p.encoding is None),
        "leave_one_out_top1_nn_euclidean": loo_hits / len(items),
        "exact_duplicate_files": sum(c - 1 for c in digests.values()),
        "duplicates_removed": False,
    }


def accuracy(fr: Any, files: dict[str, list[Path]], seeds: list[int], upsample: int) -> dict[str, Any]:
    started = time.perf_counter()
    photos = {
        path: encode_photo(fr, path, identity, upsample)
        for identity, paths in files.items()
        for path in paths
    }
    encode_s = time.perf_counter() - started
    per_seed = [evaluate_seed(photos, files, seed) for seed in seeds]
    keys = (
        "top1_nn_euclidean",
        "top1_mean_cosine",
        "top1_nn_euclidean_detected_only",
        "top1_mean_cosine_detected_only",
    )
    protocol = {key: spread([s[key] for s in per_seed if s[key] is not None]) for key in keys}
    protocol["probe_detection_rate"] = spread([1 - s["probes_without_face"] / s["probes"] for s in per_seed])
    return {
        "all_photos": all_photos_summary(photos),
        "protocol_80_20": {"seeds": seeds, **protocol, "per_seed": per_seed},
        "encode_all_photos_s": round(encode_s, 2),
    }


def edgeface_encoder() -> Any:
    """edgeface's per-photo path as the daemon runs it (`build_encoder` on the config defaults: BlazeFace
    full-range without pad retry, face-mesh refinement, alignment, int8 embedder with flip averaging), with
    1 TFLite thread."""
    from edgeface.config import parse_config
    from edgeface.daemon.parts import build_encoder

    return build_encoder(parse_config({"embedder": {"num_threads": 1}}))


def time_edgeface(encoder: Any, bgr: np.ndarray) -> tuple[float, float, int]:
    """Wall ms, process-CPU ms and faces found for edgeface embedding every face in the frame."""
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    faces = encoder.encode(bgr)
    return (time.perf_counter_ns() - t0) / 1e6, (time.process_time_ns() - c0) / 1e6, len(faces)


def time_frame(
    fr: Any, rgb: np.ndarray, upsample: int
) -> tuple[float, float, list[tuple[int, int, int, int]]]:
    """Wall ms, process-CPU ms and face boxes of the library's full pipeline on one frame."""
    t0, c0 = time.perf_counter_ns(), time.process_time_ns()
    boxes = fr.face_locations(rgb, number_of_times_to_upsample=upsample, model="hog")
    fr.face_encodings(rgb, known_face_locations=boxes)
    return (time.perf_counter_ns() - t0) / 1e6, (time.process_time_ns() - c0) / 1e6, boxes


def speed(fr: Any, photos: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    """ms/frame of face_locations (HOG) + face_encodings on 640x480 frames with 0, 1 and 3 faces."""
    import cv2
    import numpy as np

    out: dict[str, Any] = {}
    encoder = edgeface_encoder()
    for n_faces in FACE_COUNTS:
        frames = make_frames(photos, n_faces, args.frames, seed=args.frame_seed + n_faces)
        rgbs = [np.ascontiguousarray(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]
        time_frame(fr, rgbs[0], args.upsample)  # warm-up
        time_edgeface(encoder, frames[0])
        samples: list[float] = []
        cpu: list[float] = []
        found: list[int] = []
        widths: list[int] = []
        ours: list[float] = []
        ours_cpu: list[float] = []
        ours_found: list[int] = []
        for frame, rgb in zip(frames, rgbs, strict=True):
            for _ in range(args.repeats):  # interleaved: both see the same machine load
                ms, cpu_ms, boxes = time_frame(fr, rgb, args.upsample)
                samples.append(ms)
                cpu.append(cpu_ms)
                ms, cpu_ms, count = time_edgeface(encoder, frame)
                ours.append(ms)
                ours_cpu.append(cpu_ms)
            ours_found.append(count)
            found.append(len(boxes))
            widths.extend(b[1] - b[3] for b in boxes)
        stats = percentiles(samples)
        out[f"faces_{n_faces}"] = {
            "ms_per_frame": stats,
            "process_cpu_ms_per_frame": percentiles(cpu),
            "fps_at_median": 1000.0 / stats["median"],
            "frames": len(rgbs),
            "repeats": args.repeats,
            "faces_pasted_per_frame": n_faces,
            "faces_found_mean": statistics.fmean(found),
            "found_box_width_px_median": statistics.median(widths) if widths else None,
            "edgeface": {
                "ms_per_frame": percentiles(ours),
                "process_cpu_ms_per_frame": percentiles(ours_cpu),
                "fps_at_median": 1000.0 / percentiles(ours)["median"],
                "faces_found_mean": statistics.fmean(ours_found),
                "what": "detect + refine + align + embed every face (no tracker shortcut), 1 thread",
            },
            "speed_ratio_edgeface_over_peer": stats["median"] / percentiles(ours)["median"],
        }
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer photos, seeds and frames (< 1 min)")
    p.add_argument("--faces", type=Path, default=DEFAULT_FACES, help="<identity>/<photo> directory")
    p.add_argument("--seeds", type=int, help="number of split seeds, 0..N-1 (default 10; quick 2)")
    p.add_argument("--photos-per-identity", type=int, help="use only the first N photos (quick: 8)")
    p.add_argument("--frames", type=int, help="frames per face count (default 20; quick 2)")
    p.add_argument("--repeats", type=int, help="timed runs per frame (default 5; quick 2)")
    p.add_argument("--upsample", type=int, default=1, help="face_locations number_of_times_to_upsample")
    p.add_argument("--frame-seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else 10)
    args.photos_per_identity = args.photos_per_identity or (8 if args.quick else None)
    args.frames = args.frames or (2 if args.quick else 20)
    args.repeats = args.repeats or (2 if args.quick else 5)
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    files = list_identities(args.faces)
    if args.photos_per_identity:
        files = {name: paths[: args.photos_per_identity] for name, paths in files.items()}
    params: dict[str, Any] = {
        "faces": str(args.faces),
        "identities": len(files),
        "photos": sum(len(v) for v in files.values()),
        "detector": f"hog, number_of_times_to_upsample={args.upsample}",
        "encoder": "face_encodings(model='small', num_jitters=1), 128-d",
        "largest_face_per_photo": True,
        "split": "_common.split_80_20 (numpy default_rng(seed), per identity, first round(0.8 n) = gallery)",
        "seeds": list(range(args.seeds)),
        "frames_per_face_count": args.frames,
        "repeats": args.repeats,
        "frame_size": [640, 480],
        "frame_builder": "_common.make_frames (central square crop -> 210 px, grey background)",
        "threads": "library default (dlib HOG is single-threaded); cpu affinity in host",
        "quick": args.quick,
        "loadavg_at_start": list(os.getloadavg()),
        "timing": "ms_per_frame = wall clock; process_cpu_ms_per_frame = CPU time of this process (all threads)",
    }
    try:
        fr, params["versions"] = import_peer()
    except ImportError as exc:
        log.error("%s", exc)
        emit("peer_face_recognition", params, {"error": str(exc)}, args.out)
        return 2
    log.info("encoding %d photos", params["photos"])
    results = accuracy(fr, files, params["seeds"], args.upsample)
    all_photos = sorted(p for paths in list_identities(args.faces).values() for p in paths)
    log.info("timing frames")
    results["speed"] = speed(fr, all_photos, args)
    emit("peer_face_recognition", params, results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
