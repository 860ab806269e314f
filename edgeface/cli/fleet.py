"""`edgeface fleet status`: which door runs which gallery, from the broker's retained status and state."""

from __future__ import annotations

import argparse
import json

from edgeface.cli.broker import add_broker_options, broker_options
from edgeface.errors import BundleError


def _status(args: argparse.Namespace) -> int:
    from edgeface.server.fleet import collect, fleet_rows, table

    if args.fleet is not None:
        from edgeface.sync.validate import valid_fleet

        try:
            valid_fleet(args.fleet)
        except ValueError as exc:
            raise BundleError(f"--fleet: {exc}") from exc
    try:
        messages = collect(broker_options(args), args.prefix, args.wait)
    except ValueError as exc:  # a bad --prefix
        raise BundleError(f"--prefix: {exc}") from exc
    rows = fleet_rows(messages, args.prefix, args.fleet)
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(table(rows) if rows else "no door has reported under this prefix")
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 600] seconds")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("fleet", help="look at a fleet's doors through its broker")
    verbs = parser.add_subparsers(dest="fleet_verb", required=True, metavar="VERB")
    p = verbs.add_parser("status", help="each door: online, gallery version, applied/rejected and why")
    add_broker_options(p)
    p.add_argument("--fleet", help="only the doors whose gallery state names this fleet")
    p.add_argument("--json", action="store_true", help="one JSON array of doors instead of the table")
    p.add_argument("--wait", type=_seconds, default=1.0, help="seconds to collect retained messages")
    p.set_defaults(func=_status)
