"""Options shared by the photo verbs, turned into a config for `edgeface.daemon.parts` (the one builder)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edgeface.cli.argtypes import fraction, megapixels
from edgeface.config import Config, parse_config
from edgeface.util.paths import DEFAULT_EMBEDDER_CARD
from edgeface.vision.photos import DEFAULT_MAX_MEGAPIXELS

if TYPE_CHECKING:
    from edgeface.vision.encoder import FaceEncoder


target_fpir = fraction  # argparse type for `--target-fpir`: a share strictly between 0 and 1


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument(
        "--models",
        type=Path,
        default=None,
        help="model folder (default: $EDGEFACE_MODELS or the installed models)",
    )
    group.add_argument(
        "--embedder", type=Path, default=None, help=f"embedder card (default: {DEFAULT_EMBEDDER_CARD})"
    )
    group.add_argument(
        "--detector",
        choices=["full", "short"],
        default="full",
        help="BlazeFace range tried first (default: full)",
    )
    group.add_argument("--threads", type=int, default=2, help="TFLite threads (default: 2)")
    group.add_argument(
        "--no-refine-landmarks",
        dest="refine_landmarks",
        action="store_false",
        help="align on BlazeFace's coarse keypoints instead of face-mesh refined ones (measured less accurate)",
    )
    group.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        help="embed each face once instead of averaging it with its mirror image (measured less accurate)",
    )
    photos = parser.add_argument_group("photos")
    photos.add_argument(
        "--max-megapixels",
        type=megapixels,
        default=DEFAULT_MAX_MEGAPIXELS,
        help=f"refuse photos larger than this (default {DEFAULT_MAX_MEGAPIXELS:g}, fits a Raspberry Pi)",
    )


def photo_config(args: argparse.Namespace, gallery: Path | None = None) -> Config:
    """The config the photo verbs run with: the same parser and defaults as the daemon's."""
    embedder: dict[str, object] = {
        "num_threads": args.threads,
        "refine_landmarks": args.refine_landmarks,
        "flip": args.flip,
    }
    if args.embedder is not None:
        embedder["card"] = str(Path(args.embedder).resolve())  # an absolute card path wins over models_dir
    if args.models is not None:
        embedder["models_dir"] = str(args.models)
    raw: dict[str, dict[str, object]] = {"embedder": embedder, "detector": {"model": args.detector}}
    if gallery is not None:
        raw["gallery"] = {"dir": str(gallery)}
    match: dict[str, object] = {}
    if getattr(args, "threshold", None) is not None:
        match["threshold"] = args.threshold
    if getattr(args, "margin", None) is not None:
        match["margin"] = args.margin
    if match:
        raw["match"] = match
    return parse_config(raw)


def load_encoder(args: argparse.Namespace) -> FaceEncoder:
    """The photo face path (detector cascade, refinement, flip averaging) built by `edgeface.daemon.parts`."""
    from edgeface.daemon.parts import build_encoder

    return build_encoder(photo_config(args), photos=True)
