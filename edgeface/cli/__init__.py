"""`edgeface` command line: one module per verb, each exposing `add_parser(subparsers)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

from edgeface.errors import EdgefaceError
from edgeface.util.logsafe import printable

VERB_MODULES = ("enroll", "identify", "eval", "run", "doctor", "demo", "gallery", "fleet")


class OneLineParser(argparse.ArgumentParser):
    """A bad argument is one line on stderr naming it (argparse would print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="edgeface", description="Face recognition for door units.")
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
        print(f"edgeface {args.verb}: error: {printable(str(exc), 2000)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file system refusal not caught nearer (a full disk, a read-only mount)
        where = f" {printable(str(exc.filename), 300)}" if exc.filename else ""
        print(f"edgeface {args.verb}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
