"""`edgeface demo`: run the daemon on emulated frames of real faces, printing every MQTT event."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from edgeface.cli.argtypes import int_in, seconds

DEFAULT_FACES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces5"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="the daemon on emulated frames of real faces, via a local broker"
    )
    parser.add_argument(
        "--faces",
        type=Path,
        default=Path(os.environ.get("EDGEFACE_FACES", DEFAULT_FACES)),
        help="folder of identity sub-folders (default: ../shared/data/faces5 or $EDGEFACE_FACES)",
    )
    parser.add_argument("--seconds", type=seconds, help="stop after this long (default: when the scene ends)")
    parser.add_argument(
        "--strangers", type=int_in(0, 1000), default=1, help="identities kept out of the gallery (default 1)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeface.demo.runner import run_demo

    print(json.dumps(run_demo(args.faces, args.seconds, args.strangers)))
    return 0
