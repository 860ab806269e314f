"""`edgeface enroll`: add people to a gallery from photos; every photo without a usable face is named."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from edgeface.cli.common import add_model_options, load_encoder
from edgeface.errors import EdgefaceError, GalleryError, ImageError, NoFaceError
from edgeface.faces import FaceEncoder
from edgeface.gallery import Gallery, GalleryStore
from edgeface.photos import identity_folders, read_image

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("enroll", help="add people to a gallery from photos")
    parser.add_argument("--gallery", type=Path, required=True, help="gallery folder (created if missing)")
    parser.add_argument("--id", dest="identity", help="identity id for the IMAGE arguments")
    parser.add_argument("--name", help="display name (default: the id)")
    parser.add_argument("--folders", type=Path, help="enroll every sub-folder of this folder as one identity")
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    add_model_options(parser)
    parser.set_defaults(func=run)


def embed_photos(encoder: FaceEncoder, paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Embeddings of the largest face of each photo, and a reason for each photo that gave none."""
    embeddings, problems = [], []
    for path in paths:
        try:
            embeddings.append(encoder.encode_largest(read_image(path), source=str(path)).embedding)
        except (ImageError, NoFaceError) as exc:
            problems.append(str(exc))
    dim = encoder.embedder.dim
    return (np.stack(embeddings) if embeddings else np.zeros((0, dim), np.float32)), problems


def run(args: argparse.Namespace) -> int:
    if bool(args.folders) == bool(args.identity):
        raise EdgefaceError("give either --folders ROOT, or --id ID with IMAGE paths")
    if args.identity and not args.images:
        raise EdgefaceError("--id needs at least one IMAGE")
    people = (
        {name: (name, files) for name, files in identity_folders(args.folders).items()}
        if args.folders
        else {args.identity: (args.name or args.identity, list(args.images))}
    )
    encoder = load_encoder(args)
    store = GalleryStore(args.gallery)
    gallery = store.load() if store.exists() else Gallery.empty(encoder.embedder.dim, encoder.embedder.sha256)
    if gallery.model_sha256 != encoder.embedder.sha256:
        raise GalleryError(
            f"{args.gallery}: gallery was made with another embedder ({gallery.model_sha256[:12]}...)"
        )
    skipped = 0
    for identity, (name, files) in people.items():
        embeddings, problems = embed_photos(encoder, files)
        for problem in problems:
            print(f"skipped: {problem}", file=sys.stderr)
        skipped += len(problems)
        if len(embeddings) == 0:
            print(f"not enrolled: {identity}: none of {len(files)} photos had a usable face", file=sys.stderr)
            continue
        gallery = gallery.enroll(identity, name, embeddings)
        print(f"enrolled {identity}: {len(embeddings)} of {len(files)} photos")
    store.save(gallery.with_version(gallery.version + 1))
    print(f"gallery {args.gallery}: {len(gallery)} identities, version {gallery.version + 1}")
    encoder.close()
    return 1 if skipped else 0
