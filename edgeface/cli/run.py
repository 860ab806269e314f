"""`edgeface run --config FILE`: the daemon, as systemd starts it."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from edgeface.config import DEFAULT_PATH, load_config


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the door-unit daemon")
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_PATH, help=f"TOML config (default {DEFAULT_PATH})"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeface.daemon.service import Daemon

    daemon = Daemon(load_config(args.config), config_path=args.config)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    return daemon.run()
