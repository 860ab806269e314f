"""`edgeface gallery keygen|certify|revoke|build|verify|inspect|publish|timestamp`: the fleet server's side of
gallery sync (`list|remove|rename|events`, who a door knows, are in `edgeface.cli.people`)."""

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
from edgeface.identity.rule import CardFallback
from edgeface.util.files import check_output_path, write_atomic
from edgeface.util.logsafe import printable

if TYPE_CHECKING:
    from edgeface.cli.enroll import Enrolment
    from edgeface.identity.gallery import Gallery
    from edgeface.sync.mqtt import BrokerOptions
    from edgeface.sync.signing import Ed25519PublicKey

log = logging.getLogger(__name__)


def _keygen(args: argparse.Namespace) -> int:
    from edgeface.server.signing import generate_keypair

    generate_keypair(args.private, args.public, overwrite=args.force)
    if args.root:
        log.info(
            "wrote root key %s (keep it OFFLINE: it only certifies and revokes signing keys) and %s "
            "(install on every device as sync.root_key)",
            args.private,
            args.public,
        )
    else:
        log.info("wrote %s (keep it secret) and %s (install on every device)", args.private, args.public)
    return 0


def _enroll_folders(root: Path, model_args: argparse.Namespace) -> Enrolment:
    """The `enroll` policy on photo folders (`cli.enroll.enroll_people`): the Enrolment, not yet written."""
    from edgeface.cli.common import load_encoder
    from edgeface.cli.enroll import enroll_people
    from edgeface.identity.gallery import Gallery
    from edgeface.vision.photos import identity_folders, max_pixels_of

    people = {name: (name, files) for name, files in identity_folders(root).items()}
    encoder = load_encoder(model_args)
    try:
        gallery = Gallery.empty(encoder.embedder.dim, encoder.embedder.sha256)
        max_pixels = max_pixels_of(model_args.max_megapixels)
        return enroll_people(encoder, gallery, people, model_args.largest_face, max_pixels)
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
    gallery = gallery.calibrated_with_card(args.target_fpir, CardFallback.of_card(card))
    log.info("%s", calibration_line(gallery))
    return gallery


def _build(args: argparse.Namespace) -> int:
    from edgeface.server.build import (
        build_bundle,
        check_build_arguments,
        load_source_gallery,
        write_payload_file,
    )
    from edgeface.server.signing import load_private_key
    from edgeface.sync.signed_calibration import evidence_of

    # everything a device would refuse is refused before any work, by the device's own checks
    check_build_arguments(args.fleet, args.version, args.expires, args.chunk_bytes)
    if args.payload_dir is not None and args.url_base is None:
        raise BundleError("--payload-dir: only with --url-base")
    check_output_path(args.out, "--out")
    key = load_private_key(args.key)
    enrolment = _enroll_folders(args.folders, args) if args.folders else None
    if enrolment is not None and enrolment.refused:
        # a signed bundle goes to every door: it is built from all the photos or not at all
        print(
            f"--out {args.out}: not written, {len(enrolment.refused)} refused (a bundle is built only "
            "when every photo enrols):",
            file=sys.stderr,
        )
        enrolment.print_refused()
        return 1
    gallery = enrolment.gallery if enrolment is not None else load_source_gallery(args.gallery)
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
        url_base=args.url_base,
    )
    if args.url_base is not None:
        served = write_payload_file(data, args.payload_dir or args.out.parent / "payloads")
        log.info("payload for %s: %s (serve it under --url-base)", args.url_base, served)
    write_atomic(args.out, data, "--out")
    if enrolment is not None:
        enrolment.print_done()
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
    from edgeface.sync.bundle import MAX_PAYLOAD
    from edgeface.sync.manifest import MAX_MANIFEST_BYTES
    from edgeface.util.files import read_bytes

    return read_bytes(path, MAX_PAYLOAD + MAX_MANIFEST_BYTES + 1024, what)


def _broker_options(args: argparse.Namespace) -> BrokerOptions:
    """The broker options of a verb that names a fleet, the fleet checked as a door checks it."""
    from edgeface.sync.validate import valid_fleet

    try:
        valid_fleet(args.fleet)
    except ValueError as exc:
        raise BundleError(f"--fleet: {exc}") from exc
    return broker_options(args)


def _publish(args: argparse.Namespace) -> int:
    from edgeface.server.publish import publish

    options = _broker_options(args)
    fallback = _read(args.full, "--full") if args.full else None
    bundle = _read(args.path, "bundle")
    cert = _read(args.cert, "--cert") if args.cert else None
    revocations = _read(args.revocations, "--revocations") if args.revocations else None
    done = publish(
        options,
        args.prefix,
        args.fleet,
        bundle,
        fallback,
        args.state_wait,
        args.keep_chain,
        cert,
        revocations,
    )
    log.info(
        "published %s v%d in %d chunks; cleared %d old chunks",
        "delta" if done.delta else "full",
        done.version,
        done.chunks,
        done.cleared,
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edgeface.cli.people import add_verbs

    parser = subparsers.add_parser(
        "gallery", help="who is enrolled (list, remove, rename, events); build, sign, verify, publish bundles"
    )
    verbs = parser.add_subparsers(dest="gallery_verb", required=True, metavar="VERB")
    add_verbs(verbs)

    p = verbs.add_parser("keygen", help="make an Ed25519 signing key pair")
    p.add_argument("--private", type=Path, required=True)
    p.add_argument("--public", type=Path, required=True)
    p.add_argument("--force", action="store_true", help="overwrite an existing private key")
    p.add_argument("--root", action="store_true", help="an offline root key (certifies signing keys)")
    p.set_defaults(func=_keygen)

    from edgeface.cli.argtypes import float_in
    from edgeface.cli.common import add_model_options, target_fpir
    from edgeface.cli.gallery_trust import add_trust_verbs

    add_trust_verbs(verbs)  # certify, revoke, timestamp

    p = verbs.add_parser(
        "build",
        help="build and sign a full or delta bundle",
        epilog="exit status: 0 written; 1 with --folders, a photo or identity refused (each named) and "
        "nothing written; 2 any other error. Photos follow the `enroll` rule: a photo with several faces "
        "is enrolled by its clearly dominant one; comparable faces are refused.",
    )
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
        help="with --folders: enroll the largest face even when another is of comparable size (as `enroll`)",
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
    p.add_argument(
        "--url-base",
        help="devices fetch the payload from URL_BASE/<sha256> (HTTP(S), a CDN or S3) instead of MQTT chunks",
    )
    p.add_argument(
        "--payload-dir",
        type=Path,
        help="with --url-base: folder to write <sha256> into, served under the URL (default OUT_DIR/payloads)",
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
    _add_broker_options(p)
    p.add_argument(
        "--full", type=Path, help="full bundle to publish when a delta's base is not on every device"
    )
    p.add_argument(
        "--state-wait",
        type=float_in(0.0, 3600.0),
        default=1.0,
        help="seconds to collect devices' retained state",
    )
    p.add_argument(
        "--keep-chain",
        type=int,
        default=8,
        choices=range(1, 65),
        metavar="N",
        help="URL delta with --full: announce the full bundle and the last N deltas for catch-up (1..64)",
    )
    p.add_argument(
        "--cert", type=Path, help="the signing key's certificate (doors provisioned with a root key)"
    )
    p.add_argument("--revocations", type=Path, help="the root's revocation list (from `gallery revoke`)")
    p.add_argument("path", type=Path)
    p.set_defaults(func=_publish)


def _add_broker_options(p: argparse.ArgumentParser) -> None:
    add_broker_options(p)
    p.add_argument("--fleet", required=True)
