"""`edgeface gallery certify|revoke|timestamp`: the offline root's certificates and revocation lists, and the
fleet's short-lived signed timestamp (docs/fleet.md). Registered by `edgeface.cli.gallery.add_parser`."""

from __future__ import annotations

import argparse
import logging
import math
from datetime import datetime
from pathlib import Path

from edgeface.cli.gallery import _add_broker_options, _broker_options, _read
from edgeface.errors import BundleError
from edgeface.util.files import check_output_path, write_atomic
from edgeface.util.logsafe import printable

log = logging.getLogger(__name__)


def _certify(args: argparse.Namespace) -> int:
    from edgeface.server.certify import certify
    from edgeface.server.signing import load_private_key
    from edgeface.sync.signing import load_public_key
    from edgeface.sync.trust import key_id

    check_output_path(args.out, "--out")
    root, key = load_private_key(args.root_key), load_public_key(args.public)
    not_before = _rfc3339_arg(args.not_before) if args.not_before else None
    write_atomic(args.out, certify(root, key, args.days, not_before), "--out")
    log.info("wrote %s: key %s certified for %g days (publish with --cert)", args.out, key_id(key), args.days)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from edgeface.server.certify import revoke
    from edgeface.server.signing import load_private_key

    check_output_path(args.out, "--out")
    previous = _read(args.previous, "--previous") if args.previous else None
    write_atomic(args.out, revoke(load_private_key(args.root_key), args.key_id, previous), "--out")
    log.info("wrote %s revoking %s (publish with --revocations)", args.out, ", ".join(args.key_id))
    return 0


def _rfc3339_arg(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BundleError(f"--not-before: expected an RFC 3339 time with offset, got {printable(text, 60)!r}")
    return moment


def _timestamp(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from edgeface.server.signing import load_private_key
    from edgeface.server.timestamp import publish_timestamp

    options = _broker_options(args)
    key = load_private_key(args.key)
    cert = _read(args.cert, "--cert") if args.cert else None
    lifetime = timedelta(minutes=args.minutes)
    record = publish_timestamp(options, args.prefix, args.fleet, key, lifetime, cert, args.state_wait)
    log.info("timestamp: fleet %s at version %d, expires %s", args.fleet, record.version, record.expires)
    return 0


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of minutes, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 31 * 24 * 60:
        raise argparse.ArgumentTypeError(f"must be > 0 and at most 44640 (31 days), got {text!r}")
    return value


def add_trust_verbs(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verbs.add_parser("certify", help="certify a gallery-signing public key with the offline root key")
    p.add_argument("--root-key", type=Path, required=True, help="the root private key")
    p.add_argument("--public", type=Path, required=True, help="the signing public key to certify")
    p.add_argument("--days", type=float, default=365.0, help="validity in days (default 365)")
    p.add_argument("--not-before", help="start of validity, RFC 3339 (default now)")
    p.add_argument("--out", type=Path, required=True, help="certificate file to write")
    p.set_defaults(func=_certify)

    p = verbs.add_parser("revoke", help="sign a revocation list of signing-key ids with the root key")
    p.add_argument("--root-key", type=Path, required=True, help="the root private key")
    p.add_argument("--key-id", action="append", required=True, help="key id to revoke (repeatable)")
    p.add_argument("--previous", type=Path, help="the current revocation list, extended (sequence + 1)")
    p.add_argument("--out", type=Path, required=True, help="revocation list file to write")
    p.set_defaults(func=_revoke)

    p = verbs.add_parser("timestamp", help="sign and retain a short-lived timestamp of the newest gallery")
    _add_broker_options(p)
    p.add_argument("--key", type=Path, required=True, help="the gallery-signing private key")
    p.add_argument(
        "--cert", type=Path, help="the signing key's certificate (doors provisioned with a root key)"
    )
    p.add_argument("--minutes", type=_minutes, default=60.0, help="lifetime (default 60; re-run well before)")
    p.add_argument("--state-wait", type=float, default=1.0, help="seconds to read the retained announcement")
    p.set_defaults(func=_timestamp)
