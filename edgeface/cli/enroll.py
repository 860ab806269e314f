"""`edgeface enroll`: add people to a gallery from photos, then re-calibrate its open-set threshold.

A photo is enrolled by its face, or by its largest face when that one dominates (DOMINANT_AREA_RATIO), said
in one line naming the photo. A photo without a usable face, or with comparable faces, is refused by name.
The usable photos are written and the refused ones listed (exit 3); if none is usable nothing is written
and the first line says so (exit 1). Nothing is reported as enrolled before it was written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.cli.common import add_model_options, load_encoder, target_fpir
from edgeface.daemon.parts import check_gallery
from edgeface.errors import EdgefaceError, GalleryError, ImageError, NoFaceError
from edgeface.identity.calibration import DEFAULT_TARGET_FPIR
from edgeface.identity.gallery import Gallery, GalleryStore
from edgeface.identity.rule import CardFallback
from edgeface.util.files import check_writable_folder
from edgeface.util.labels import check_label
from edgeface.util.logsafe import printable
from edgeface.vision.encoder import DOMINANT_AREA_RATIO, FaceEncoder, PhotoFace
from edgeface.vision.modelcard import ModelCard
from edgeface.vision.photos import DEFAULT_MAX_MEGAPIXELS, identity_folders, max_pixels_of, read_image

log = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = max_pixels_of(DEFAULT_MAX_MEGAPIXELS)

# Exit statuses of `enroll` (2 is every other error, from `edgeface.cli.main`).
EXIT_ALL = 0  # every photo enrolled
EXIT_NOTHING = 1  # nothing enrolled, nothing written
EXIT_PARTIAL = 3  # the usable photos enrolled and written, the refused ones listed

EXIT_STATUS_HELP = (
    f"exit status: {EXIT_ALL} every photo enrolled; {EXIT_PARTIAL} the usable photos enrolled and written, "
    f"the refused ones listed; {EXIT_NOTHING} nothing enrolled, nothing written; 2 any other error "
    "(bad arguments, unusable gallery or models). A photo with several faces is enrolled by its largest "
    f"when that one has at least {DOMINANT_AREA_RATIO:g}x the area of every other; photos with comparable "
    "faces are refused by name (--largest-face takes the largest anyway)."
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "enroll", help="add people to a gallery from photos", epilog=EXIT_STATUS_HELP
    )
    parser.add_argument("--gallery", type=Path, required=True, help="gallery folder (created if missing)")
    parser.add_argument("--id", dest="identity", help="identity id for the IMAGE arguments")
    parser.add_argument("--name", help="display name (default: the id)")
    parser.add_argument("--folders", type=Path, help="enroll every sub-folder of this folder as one identity")
    parser.add_argument(
        "--largest-face",
        action="store_true",
        help="enroll the largest face of a photo even when another face is of comparable size",
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
) -> PhotoFace:
    """The photo's face by the dominant-face rule (`vision.encoder.dominant_face`); ImageError or
    NoFaceError naming the photo when it cannot be read, has no face, or has comparable faces."""
    return encoder.encode_photo(read_image(path, max_pixels), str(path), largest=largest)


def embed_photos(
    encoder: FaceEncoder, paths: list[Path], largest: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, list[str], list[str]]:
    """Embeddings of the photos with one clear face, a note for each photo whose smaller faces were passed
    over, and a reason for each photo refused."""
    embeddings, notes, refused = [], [], []
    for path in paths:
        try:
            chosen = embed_photo(encoder, path, largest, max_pixels)
        except (ImageError, NoFaceError) as exc:
            refused.append(str(exc))
            continue
        embeddings.append(chosen.face.embedding)
        note = chosen.note(str(path))
        if note is not None:
            notes.append(note)
    dim = encoder.embedder.dim
    return (np.stack(embeddings) if embeddings else np.zeros((0, dim), np.float32)), notes, refused


@dataclass(frozen=True, slots=True)
class Enrolled:
    identity: str
    photos: int  # photos enrolled
    given: int  # photos given


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What enrolling photos did to a gallery: the gallery with every usable photo added (not yet written),
    who was enrolled from how many photos, which faces were chosen among several, and what was refused."""

    gallery: Gallery
    enrolled: tuple[Enrolled, ...]
    notes: tuple[str, ...]
    refused: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        if not self.enrolled:
            return EXIT_NOTHING
        return EXIT_PARTIAL if self.refused else EXIT_ALL

    def print_done(self) -> None:
        """After the gallery was written: who was enrolled, the faces chosen, and every refusal."""
        for person in self.enrolled:
            print(f"enrolled {printable(person.identity)}: {person.photos} of {person.given} photos")
        for note in self.notes:
            print(f"note: {printable(note, 400)}")
        self.print_refused()

    def print_refused(self) -> None:
        for problem in self.refused:
            print(f"not enrolled: {printable(problem, 400)}", file=sys.stderr)


def enroll_people(
    encoder: FaceEncoder,
    gallery: Gallery,
    people: dict[str, tuple[str, list[Path]]],
    largest: bool,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Enrolment:
    """`gallery` with each person's usable photos enrolled, and everything that was refused.

    The one enrolment policy of `enroll` and `gallery build --folders`: a photo unreadable or above the pixel
    cap, without a face, or with comparable faces (unless `largest`) is refused by name; so is an id that is
    not valid text (a non-UTF-8 folder name), and a person none of whose photos is usable. Nothing is
    printed or written here: the caller writes, then reports (`Enrolment.print_done`)."""
    enrolled: list[Enrolled] = []
    notes: list[str] = []
    refused: list[str] = []
    for identity, (name, files) in people.items():
        try:
            check_label(identity, "identity id")
            check_label(name, "identity name", allow_empty=True)
        except ValueError as exc:
            refused.append(
                f"{printable(identity, 80)}: {exc} (rename the folder or choose another --id/--name)"
            )
            continue
        embeddings, chosen, failed = embed_photos(encoder, files, largest, max_pixels)
        notes += chosen
        refused += failed
        if len(embeddings) == 0:
            refused.append(f"{identity}: none of {len(files)} photos had a usable face")
            continue
        gallery = gallery.enroll(identity, name, embeddings)
        enrolled.append(Enrolled(identity, len(embeddings), len(files)))
    return Enrolment(gallery, tuple(enrolled), tuple(notes), tuple(refused))


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


def enroll_event(encoder: FaceEncoder, gallery: Gallery, args: argparse.Namespace) -> Enrolment:
    """`gallery` with the crops the door kept of event `--from-event` added to `--id` (not yet written)."""
    from edgeface.pipeline.visitor_settings import VisitorSettings
    from edgeface.pipeline.visitors import VisitorStore, check_event_id

    state_dir = args.state_dir or Path(args.gallery).resolve().parent
    crops = VisitorStore(state_dir, VisitorSettings()).crops(check_event_id(args.from_event))
    embeddings = encoder.embed_crops(crops)  # the aligned crops the embedder saw at the door
    note = f"{args.identity}: {len(crops)} face crops of event {args.from_event}"
    enrolled = (Enrolled(args.identity, len(crops), len(crops)),)
    return Enrolment(gallery.enroll(args.identity, args.name or "", embeddings), enrolled, (note,), ())


def run(args: argparse.Namespace) -> int:
    people = people_of(args)
    check_writable_folder(args.gallery, "--gallery")  # before minutes of encoding, not after
    encoder = load_encoder(args)
    try:
        store = GalleryStore(args.gallery)
        gallery = current_gallery(store, encoder)
        if args.from_event is not None:
            enrolment = enroll_event(encoder, gallery, args)
        else:
            enrolment = enroll_people(
                encoder, gallery, people, args.largest_face, max_pixels_of(args.max_megapixels)
            )
    finally:
        encoder.close()
    if not enrolment.enrolled:
        print(
            f"gallery {args.gallery}: unchanged, nothing enrolled ({len(enrolment.refused)} refused):",
            file=sys.stderr,
        )
        enrolment.print_refused()
        return EXIT_NOTHING
    gallery = gallery_to_write(enrolment, args.target_fpir, encoder.embedder.card)
    store.save(gallery)
    enrolment.print_done()
    print(f"gallery {args.gallery}: {len(gallery)} identities, version {gallery.version}")
    print(calibration_line(gallery))
    if enrolment.refused:
        print(
            f"gallery {args.gallery}: written without the {len(enrolment.refused)} refused above "
            f"(exit {EXIT_PARTIAL}: fix or remove them and enroll again)",
            file=sys.stderr,
        )
    return enrolment.exit_code


def gallery_to_write(enrolment: Enrolment, target_fpir: float, card: ModelCard) -> Gallery:
    """The gallery `enroll` writes: the next version, its threshold calibrated on its enrolment photos."""
    gallery = enrolment.gallery.with_version(enrolment.gallery.version + 1)
    return gallery.calibrated_with_card(target_fpir, CardFallback.of_card(card))


def calibration_line(gallery: Gallery) -> str:
    c = gallery.calibration
    if c is None:
        return "threshold: the gallery is too small to calibrate; the embedder card's fallback applies"
    dir_text = f"{c.est_dir:.3f}" if c.est_dir is not None else "n/a (one photo per person)"
    return (
        f"threshold {c.threshold:.4f} for FPIR {c.target_fpir:g}: estimated FPIR {c.est_fpir:.4f}, DIR {dir_text} "
        f"({c.n_impostor} impostor and {c.n_genuine} genuine scores, {c.identities} identities)"
    )
