"""`edgeface identify`: one line per face found in each image, decided as the daemon decides."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeface.cli.argtypes import finite_float
from edgeface.cli.common import add_model_options, photo_config
from edgeface.daemon.parts import Parts, build_parts
from edgeface.errors import GalleryError, ImageError
from edgeface.identity.gallery import GalleryStore
from edgeface.util.logsafe import printable
from edgeface.vision.photos import DEFAULT_MAX_MEGAPIXELS, max_pixels_of, read_image


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("identify", help="identify the faces in photos against a gallery")
    parser.add_argument(
        "--gallery", type=Path, required=True, help="gallery folder made by `edgeface enroll`"
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines (default: readable lines)")
    parser.add_argument(
        "--threshold",
        type=finite_float,
        help="cosine threshold (default: the gallery's calibration, else the card's)",
    )
    parser.add_argument("--margin", type=finite_float, help="required lead over the runner-up (default: 0)")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    add_model_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not GalleryStore(args.gallery).exists():
        raise GalleryError(f"{args.gallery}: no gallery here (enroll someone first)")
    parts = build_parts(photo_config(args, gallery=args.gallery), photos=True)
    try:
        if len(parts.gallery) == 0:
            raise GalleryError(f"{args.gallery}: the gallery is empty; enroll someone first")
        print(
            f"threshold {parts.rule.threshold:.4f} ({parts.rule.source}: {parts.rule.detail})",
            file=sys.stderr,
        )
        return identify_all(parts, args.images, args.json, max_pixels_of(args.max_megapixels))
    finally:
        parts.close()


def identify_all(
    parts: Parts, images: list[Path], as_json: bool, max_pixels: int = max_pixels_of(DEFAULT_MAX_MEGAPIXELS)
) -> int:
    live, failures = parts.live.current, 0
    for path in images:
        try:
            faces = parts.encoder.encode(read_image(path, max_pixels))
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if not faces:
            print(f"no face: {path}", file=sys.stderr)
            failures += 1
        for face in faces:
            match = live.decide(face.embedding)
            row = {
                "image": str(path),
                "bbox": [round(float(v), 1) for v in face.detection.bbox],
                "decision": match.decision,
                "identity": {"id": match.identity.id, "name": match.identity.name}
                if match.identity
                else None,
                "score": round(match.score, 4),
                "margin": round(match.margin, 4),
                "threshold": round(match.threshold, 4),
                "threshold_source": live.rule.source,
            }
            if as_json:
                print(json.dumps(row))
            else:
                who = printable(match.identity.name) if match.identity else "unknown"
                print(f"{path}: {who} (score {match.score:.3f}, margin {match.margin:.3f})")
    return 1 if failures else 0
