"""`edgeface identify`: one JSON line per face found in each image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeface.cli.common import add_model_options, load_encoder
from edgeface.errors import GalleryError, ImageError
from edgeface.gallery import GalleryStore
from edgeface.index import GalleryIndex
from edgeface.match import Matcher, MatchSettings
from edgeface.photos import read_image


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("identify", help="identify the faces in photos against a gallery")
    parser.add_argument(
        "--gallery", type=Path, required=True, help="gallery folder made by `edgeface enroll`"
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines (default: readable lines)")
    parser.add_argument("--threshold", type=float, help="cosine threshold (default: the embedder card's)")
    parser.add_argument("--margin", type=float, help="required lead over the runner-up (default: the card's)")
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    add_model_options(parser)
    parser.set_defaults(func=run)


def decision_settings(card_raw: dict, threshold: float | None, margin: float | None) -> MatchSettings:
    recommended = card_raw.get("decision", {})
    if threshold is None and "threshold" not in recommended:
        raise GalleryError("no threshold: pass --threshold, or run `edgeface eval` and record it in the card")
    return MatchSettings(
        threshold=threshold if threshold is not None else float(recommended["threshold"]),
        margin=margin if margin is not None else float(recommended.get("margin", 0.0)),
    )


def run(args: argparse.Namespace) -> int:
    encoder = load_encoder(args)
    gallery = GalleryStore(args.gallery).load()
    if len(gallery) == 0:
        raise GalleryError(f"{args.gallery}: the gallery is empty; enroll someone first")
    if gallery.model_sha256 != encoder.embedder.sha256:
        raise GalleryError(f"{args.gallery}: gallery was made with another embedder, re-enroll")
    index = GalleryIndex(gallery)
    matcher = Matcher(decision_settings(encoder.embedder.card.raw, args.threshold, args.margin))
    failures = 0
    for path in args.images:
        try:
            faces = encoder.encode(read_image(path))
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        if not faces:
            print(f"no face: {path}", file=sys.stderr)
            failures += 1
        for face in faces:
            match = matcher.decide(index, face.embedding)
            row = {
                "image": str(path),
                "bbox": [round(float(v), 1) for v in face.detection.bbox],
                "decision": match.decision,
                "identity": {"id": match.identity.id, "name": match.identity.name}
                if match.identity
                else None,
                "score": round(match.score, 4),
                "margin": round(match.margin, 4),
            }
            if args.json:
                print(json.dumps(row))
            else:
                who = match.identity.name if match.identity else "unknown"
                print(f"{path}: {who} (score {match.score:.3f}, margin {match.margin:.3f})")
    encoder.close()
    return 1 if failures else 0
