"""`edgeface enroll`: add people to a gallery from photos, then re-calibrate its open-set threshold.

Every photo without a usable face is named, and so is a photo with several faces unless `--largest-face`
says which one to take. If any photo fails, nothing is written (exit 1).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from edgeface.cli.common import add_model_options, load_encoder, target_fpir
from edgeface.daemon.parts import check_gallery
from edgeface.errors import EdgefaceError, GalleryError, ImageError
from edgeface.identity.calibration import DEFAULT_TARGET_FPIR
from edgeface.identity.decision import CardDecision
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.util.files import check_writable_folder
from edgeface.util.labels import check_label
from edgeface.util.logsafe import printable
from edgeface.vision.encoder import FaceEncoder
from edgeface.vision.photos import DEFAULT_MAX_MEGAPIXELS, identity_folders, max_pixels_of, read_image

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = max_pixels_of(DEFAULT_MAX_MEGAPIXELS)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("enroll", help="add people to a gallery from photos")
    parser.add_argument("--gallery", type=Path, required=True, help="gallery folder (created if missing)")
    parser.add_argument("--id", dest="identity", help="identity id for the IMAGE arguments")
    parser.add_argument("--name", help="display name (default: the id)")
    parser.add_argument("--folders", type=Path, help="enroll every sub-folder of this folder as one identity")
    parser.add_argument(
        "--largest-face", action="store_true", help="enroll the largest face of a photo with several faces"
    )
    parser.add_argument(
        "--target-fpir",
        type=target_fpir,
        default=DEFAULT_TARGET_FPIR,
        help="share of strangers the calibrated threshold may match to anyone (default 0.01)",
    )
    parser.add_argument(
        "--from-event",
        metavar="EVENT_ID",
        help="enroll --id from the face crops the door kept of this decision (see `gallery events`)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="with --from-event: the daemon's state_dir (default: the gallery's parent)",
    )
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    add_model_options(parser)
    parser.set_defaults(func=run)


def embed_photo(
    encoder: FaceEncoder, path: Path, largest: bool, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """The embedding of the photo's face; ImageError naming the photo if it has none, or several."""
    faces = encoder.encode(read_image(path, max_pixels))
    if not faces:
        raise ImageError(f"{path}: no face found")
    if len(faces) > 1 and not largest:
        raise ImageError(f"{path}: {len(faces)} faces found; pass --largest-face to enroll the largest")
    return faces[0].embedding


def embed_photos(
    encoder: FaceEncoder, paths: list[Path], largest: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, list[str]]:
    """Embeddings of the photos that gave one face, and a reason for each photo that did not."""
    embeddings, problems = [], []
    for path in paths:
        try:
            embeddings.append(embed_photo(encoder, path, largest, max_pixels))
        except ImageError as exc:
            problems.append(str(exc))
    dim = encoder.embedder.dim
    return (np.stack(embeddings) if embeddings else np.zeros((0, dim), np.float32)), problems


class PhotoProblems(ImageError):
    """Some photos could not be enrolled; nothing is written. `problems` names each photo and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} photos or identities could not be enrolled")
        self.problems = problems

    def report(self, unchanged: str) -> int:
        """Print every problem and what was left unchanged to stderr; the exit code (1)."""
        for problem in self.problems:
            print(f"not enrolled: {printable(problem, 400)}", file=sys.stderr)
        print(f"{unchanged} ({len(self.problems)} problems; fix or remove those photos)", file=sys.stderr)
        return 1


def enroll_people(
    encoder: FaceEncoder,
    gallery: Gallery,
    people: dict[str, tuple[str, list[Path]]],
    largest: bool,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Gallery:
    """`gallery` with each person's photos enrolled; PhotoProblems if any photo (or id) is unusable.

    The one enrolment policy of `enroll` and `gallery build --folders`: a photo without a face, or with
    several unless `largest`, or unreadable or above the pixel cap, is a problem; so is an id that is not
    valid text (a non-UTF-8 folder name)."""
    problems: list[str] = []
    for identity, (name, files) in people.items():
        try:
            check_label(identity, "identity id")
            check_label(name, "identity name", allow_empty=True)
        except ValueError as exc:
            problems.append(
                f"{printable(identity, 80)}: {exc} (rename the folder or choose another --id/--name)"
            )
            continue
        embeddings, failed = embed_photos(encoder, files, largest, max_pixels)
        problems += failed
        if len(embeddings) == 0:
            problems.append(f"{identity}: none of {len(files)} photos had a usable face")
            continue
        gallery = gallery.enroll(identity, name, embeddings)
        print(f"enrolled {printable(identity)}: {len(embeddings)} of {len(files)} photos")
    if problems:
        raise PhotoProblems(problems)
    return gallery


def people_of(args: argparse.Namespace) -> dict[str, tuple[str, list[Path]]]:
    if args.from_event is not None:
        if not args.identity or args.folders or args.images:
            raise EdgefaceError("--from-event needs --id and takes no --folders or IMAGE")
        return {args.identity: (args.name or args.identity, [])}
    if bool(args.folders) == bool(args.identity):
        raise EdgefaceError("give either --folders ROOT, or --id ID with IMAGE paths")
    if args.identity and not args.images:
        raise EdgefaceError("--id needs at least one IMAGE")
    if not 0.0 < args.target_fpir < 1.0:
        raise EdgefaceError(f"--target-fpir: must be in (0, 1), got {args.target_fpir}")
    if args.folders:
        return {name: (name, files) for name, files in identity_folders(args.folders).items()}
    return {args.identity: (args.name or args.identity, list(args.images))}


def current_gallery(store: GalleryStore, encoder: FaceEncoder) -> Gallery:
    if store.root.exists() and not store.root.is_dir():
        raise GalleryError(f"{store.root}: --gallery must be a folder, and this is a file")
    gallery = store.load() if store.exists() else Gallery.empty(encoder.embedder.dim, encoder.embedder.sha256)
    return check_gallery(gallery, encoder.embedder, store.root, encoder.embedder.card.path.parent)


def enroll_event(encoder: FaceEncoder, gallery: Gallery, args: argparse.Namespace) -> Gallery:
    """`gallery` with the crops the door kept of event `--from-event` added to `--id`."""
    from edgeface.pipeline.visitor_settings import VisitorSettings
    from edgeface.pipeline.visitors import VisitorStore, check_event_id

    state_dir = args.state_dir or Path(args.gallery).resolve().parent
    crops = VisitorStore(state_dir, VisitorSettings()).crops(check_event_id(args.from_event))
    embeddings = encoder.embed_crops(crops)  # the aligned crops the embedder saw at the door
    print(f"enrolled {printable(args.identity)}: {len(crops)} face crops of event {args.from_event}")
    return gallery.enroll(args.identity, args.name or "", embeddings)


def run(args: argparse.Namespace) -> int:
    people = people_of(args)
    check_writable_folder(args.gallery, "--gallery")  # before minutes of encoding, not after
    encoder = load_encoder(args)
    try:
        store = GalleryStore(args.gallery)
        if args.from_event is not None:
            gallery = enroll_event(encoder, current_gallery(store, encoder), args)
        else:
            gallery = enroll_people(
                encoder,
                current_gallery(store, encoder),
                people,
                args.largest_face,
                max_pixels_of(args.max_megapixels),
            )
    except PhotoProblems as exc:
        return exc.report(f"gallery {args.gallery}: unchanged")
    finally:
        encoder.close()
    gallery = gallery.with_version(gallery.version + 1)
    gallery = gallery.calibrated_with_card(args.target_fpir, CardDecision.of_card(encoder.embedder.card))
    store.save(gallery)
    print(f"gallery {args.gallery}: {len(gallery)} identities, version {gallery.version}")
    print(calibration_line(gallery))
    return 0


def calibration_line(gallery: Gallery) -> str:
    c = gallery.calibration
    if c is None:
        return "threshold: the gallery is too small to calibrate; the embedder card's fallback applies"
    dir_text = f"{c.est_dir:.3f}" if c.est_dir is not None else "n/a (one photo per person)"
    return (
        f"threshold {c.threshold:.4f} for FPIR {c.target_fpir:g}: estimated FPIR {c.est_fpir:.4f}, DIR {dir_text} "
        f"({c.n_impostor} impostor and {c.n_genuine} genuine scores, {c.identities} identities)"
    )
