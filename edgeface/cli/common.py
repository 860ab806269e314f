"""Options and object construction shared by several verbs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edgeface.paths import DEFAULT_EMBEDDER_CARD, default_models_dir

if TYPE_CHECKING:
    from edgeface.faces import FaceEncoder


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("models")
    group.add_argument(
        "--models", type=Path, default=None, help="model folder (default: $EDGEFACE_MODELS or models/)"
    )
    group.add_argument(
        "--embedder", type=Path, default=None, help=f"embedder card (default: {DEFAULT_EMBEDDER_CARD})"
    )
    group.add_argument(
        "--detector", choices=["full", "short"], default="full", help="BlazeFace range (default: full)"
    )
    group.add_argument("--threads", type=int, default=2, help="TFLite threads (default: 2)")
    group.add_argument(
        "--no-refine-landmarks",
        dest="refine_landmarks",
        action="store_false",
        help="align on BlazeFace's coarse keypoints instead of face-mesh refined ones (measured less accurate)",
    )


def load_encoder(args: argparse.Namespace) -> FaceEncoder:
    from edgeface.detect import FaceDetector
    from edgeface.embed import Embedder
    from edgeface.faces import FaceEncoder

    models = args.models or default_models_dir()
    card = args.embedder or models / DEFAULT_EMBEDDER_CARD
    embedder = Embedder(card, num_threads=args.threads)
    detector = FaceDetector(models, model=args.detector, num_threads=args.threads)
    refiner = None
    if args.refine_landmarks:
        from edgeface.landmarks import LandmarkRefiner

        refiner = LandmarkRefiner(models, num_threads=args.threads)
    return FaceEncoder(detector, embedder, refiner)
