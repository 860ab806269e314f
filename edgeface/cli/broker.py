"""Broker options shared by the verbs that talk to a fleet's MQTT broker (`gallery publish`, `fleet status`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeface.sync.mqtt import BrokerOptions


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    from edgeface.cli.argtypes import broker_address

    parser.add_argument("--broker", type=broker_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--tls-ca", type=Path)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--credentials", type=Path, help="file with username:password (or two lines)")
    parser.add_argument("--prefix", default="edgeface")


def broker_options(args: argparse.Namespace) -> BrokerOptions:
    from edgeface.mqtt.settings import read_credentials
    from edgeface.sync.mqtt import BrokerOptions

    host, port = args.broker  # (host, port) from argtypes.broker_address: IPv6 in brackets, port checked
    credentials = read_credentials(args.credentials) if args.credentials else None
    user = credentials.username if credentials else None
    password = credentials.password if credentials else None
    return BrokerOptions(host, port, "", args.tls_ca, args.tls_cert, args.tls_key, user, password)
