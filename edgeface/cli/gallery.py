"""`edgeface gallery keygen|build|verify|inspect|publish`: the fleet server's side of gallery sync."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edgeface.cli.broker import add_broker_options, broker_options
from edgeface.errors import BundleError, EdgefaceError
from edgeface.identity.calibration import DEFAULT_TARGET_FPIR
from edgeface.identity.decision import CardDecision
from edgeface.util.logsafe import printable

if TYPE_CHECKING:
    from edgeface.identity.gallery import Gallery
    from edgeface.sync.signing import Ed25519PublicKey

log = logging.getLogger(__name__)


def _keygen(args: argparse.Namespace) -> int:
    from edgeface.server.signing import generate_keypair

    generate_keypair(args.private, args.public, overwrite=args.force)
    log.info("wrote %s (keep it secret) and %s (install on every device)", args.private, args.public)
    return 0


def _enroll_folders(root: Path, model_args: argparse.Namespace):
    from edgeface.cli.common import load_encoder
    from edgeface.cli.enroll import enroll_people
    from edgeface.identity.gallery import Gallery
    from edgeface.vision.photos import identity_folders, max_pixels_of

    people = {name: (name, files) for name, files in identity_folders(root).items()}
    encoder = load_encoder(model_args)
    try:
        gallery = Gallery.empty(encoder.embedder.dim, encoder.embedder.sha256)
        # the same photo reader and the same policy as `enroll`: PhotoProblems if any photo is unusable
        max_pixels = max_pixels_of(model_args.max_megapixels)
        gallery = enroll_people(encoder, gallery, people, model_args.largest_face, max_pixels)
        return gallery
    finally:
        encoder.close()


def _load_base(args: argparse.Namespace, public_key: Ed25519PublicKey) -> Gallery:
    """`--base` is a full bundle file, a gallery directory, or a version number kept in the `--gallery` store."""
    from edgeface.server.build import load_source_gallery

    if args.base.isdigit():
        if not args.gallery:
            raise BundleError("--base VERSION needs --gallery (the store that keeps that version)")
        directory = args.gallery / "versions" / f"{int(args.base):012d}"
        if not directory.is_dir():
            raise BundleError(
                f"--base {args.base}: {directory} does not exist (the store keeps few versions)"
            )
        return load_source_gallery(directory)
    return load_source_gallery(Path(args.base), public_key)


def _check_out(path: Path) -> None:
    if not path.parent.is_dir():
        raise BundleError(f"--out {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise BundleError(f"--out {path}: is a directory, give a file name")


def _write_out(path: Path, data: bytes) -> None:
    """Write next to `path`, then rename: a reader never sees half a bundle."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise BundleError(f"--out {path}: cannot write ({exc.strerror or exc})") from exc


def _calibrated(gallery: Gallery, args: argparse.Namespace) -> Gallery:
    """The gallery with its threshold chosen on its own enrolment photos for `--target-fpir`, as `enroll`
    does; a source without enrolment photos (an applied bundle) keeps the calibration it came with."""
    from edgeface.cli.common import photo_config
    from edgeface.cli.enroll import calibration_line
    from edgeface.daemon.parts import models_dir
    from edgeface.vision.modelcard import load_card

    if gallery.enrolment is None or not len(gallery.enrolment):
        log.info("%s", calibration_line(gallery))
        return gallery
    config = photo_config(args)
    card = load_card(models_dir(config) / config.embedder.card)
    gallery = gallery.calibrated_with_card(args.target_fpir, CardDecision.of_card(card))
    log.info("%s", calibration_line(gallery))
    return gallery


def _build(args: argparse.Namespace) -> int:
    from edgeface.server.build import build_bundle, check_build_arguments, load_source_gallery
    from edgeface.server.signing import load_private_key
    from edgeface.sync.decision import evidence_of

    # everything a device would refuse is refused before any work, by the device's own checks
    check_build_arguments(args.fleet, args.version, args.expires, args.chunk_bytes)
    _check_out(args.out)
    key = load_private_key(args.key)
    from edgeface.cli.enroll import PhotoProblems

    try:
        gallery = _enroll_folders(args.folders, args) if args.folders else load_source_gallery(args.gallery)
    except PhotoProblems as exc:
        return exc.report(f"--out {args.out}: not written")
    if not len(gallery):
        raise BundleError("the gallery is empty: nothing to publish")
    gallery = _calibrated(gallery, args)
    base = _load_base(args, key.public_key()) if args.base else None
    data = build_bundle(
        gallery,
        decision=evidence_of(gallery.calibration) if gallery.calibration else None,
        fleet=args.fleet,
        version=args.version,
        key=key,
        expires_days=args.expires,
        base=base,
        chunk_bytes=args.chunk_bytes,
    )
    _write_out(args.out, data)
    kind = f"delta against {base.version}" if base is not None else "full"
    log.info(
        "wrote %s: %s bundle v%d, %d identities, %d bytes",
        args.out,
        kind,
        args.version,
        len(gallery),
        len(data),
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from edgeface.sync.bundle import read_bundle, verify_bundle
    from edgeface.sync.errors import Rejected
    from edgeface.sync.signing import load_public_key

    try:
        verified = verify_bundle(read_bundle(args.path), load_public_key(args.public))
        if verified.manifest.expired(datetime.now(UTC)):
            raise Rejected("expired", f"bundle expired at {verified.manifest.expires}")
    except Rejected as exc:
        print(f"REJECTED {printable(args.path)}: {exc.reason}", file=sys.stderr)
        return 1
    m = verified.manifest
    print(
        f"OK {printable(args.path)}: fleet {printable(m.fleet)} version {m.version}, {m.count} rows, "
        "signature and sha256s verify"
    )
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from edgeface.sync.bundle import read_bundle, split_payload
    from edgeface.sync.manifest import parse_manifest

    bundle = read_bundle(args.path)
    fields, problem = None, None
    try:
        fields = json.loads(bundle.manifest)
        parse_manifest(bundle.manifest)
    except (ValueError, EdgefaceError) as exc:
        problem = str(exc)
    identities, vectors = split_payload(bundle.payload)
    info = {
        "manifest": fields,
        "manifest_problem": problem,
        "signature_bytes": len(bundle.signature),
        "payload_bytes": len(bundle.payload),
        "identities_bytes": len(identities),
        "vectors_bytes": len(vectors),
        "note": "inspect checks no signature; use `edgeface gallery verify`",
    }
    print(json.dumps(info, indent=2))
    return 0


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{what} {path}: cannot read ({exc.strerror or exc})") from exc


def _publish(args: argparse.Namespace) -> int:
    from edgeface.server.publish import publish
    from edgeface.sync.validate import valid_fleet

    try:
        valid_fleet(args.fleet)
    except ValueError as exc:
        raise BundleError(f"--fleet: {exc}") from exc
    options = broker_options(args)
    fallback = _read(args.full, "--full") if args.full else None
    done = publish(options, args.prefix, args.fleet, _read(args.path, "bundle"), fallback, args.state_wait)
    log.info(
        "published %s v%d in %d chunks; cleared %d old chunks",
        "delta" if done.delta else "full",
        done.version,
        done.chunks,
        done.cleared,
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gallery", help="build, sign, verify and publish gallery bundles")
    verbs = parser.add_subparsers(dest="gallery_verb", required=True, metavar="VERB")

    p = verbs.add_parser("keygen", help="make an Ed25519 signing key pair")
    p.add_argument("--private", type=Path, required=True)
    p.add_argument("--public", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing private key")
    p.set_defaults(func=_keygen)

    from edgeface.cli.common import add_model_options, target_fpir

    p = verbs.add_parser("build", help="build and sign a full or delta bundle")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--folders", type=Path, help="ROOT/<identity>/<photo>: enroll with the device encoder"
    )
    source.add_argument("--gallery", type=Path, help="an enrolled gallery directory (store root or version)")
    p.add_argument("--fleet", required=True)
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--expires", type=float, default=None, metavar="DAYS")
    p.add_argument(
        "--base",
        default=None,
        metavar="PATH_OR_VERSION",
        help="build a delta against a full bundle, a gallery dir, or a version kept in the --gallery store",
    )
    p.add_argument(
        "--largest-face",
        action="store_true",
        help="with --folders: enroll the largest face of a photo with several faces (as `enroll`)",
    )
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="bundle file to write (its directory must exist)")
    p.add_argument(
        "--target-fpir",
        type=target_fpir,
        default=DEFAULT_TARGET_FPIR,
        help="share of strangers the signed, calibrated threshold may match to anyone (default 0.01)",
    )
    p.add_argument(
        "--chunk-bytes",
        type=int,
        default=256 * 1024,
        help="MQTT chunk size the manifest signs (1..262144; default 262144)",
    )
    add_model_options(p)
    p.set_defaults(func=_build)

    p = verbs.add_parser("verify", help="check a bundle's signature, sha256s, contents and expiry")
    p.add_argument("--public", type=Path, required=True)
    p.add_argument("path", type=Path)
    p.set_defaults(func=_verify)

    p = verbs.add_parser("inspect", help="print a bundle's manifest and sizes (no verification)")
    p.add_argument("path", type=Path)
    p.set_defaults(func=_inspect)

    p = verbs.add_parser("publish", help="publish a bundle retained over MQTT")
    add_broker_options(p)
    p.add_argument("--fleet", required=True)
    p.add_argument(
        "--full", type=Path, help="full bundle to publish when a delta's base is not on every device"
    )
    p.add_argument("--state-wait", type=float, default=1.0, help="seconds to collect devices' retained state")
    p.add_argument("path", type=Path)
    p.set_defaults(func=_publish)
