"""`edgeface` command line: one module per verb, each exposing `add_parser(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edgeface.errors import EdgefaceError

VERB_MODULES = ("enroll", "identify", "eval", "run", "doctor", "demo", "gallery", "fleet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeface", description="Face recognition for door units.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"edgeface.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"edgeface.cli.{name}":
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except EdgefaceError as exc:
        print(f"edgeface {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
