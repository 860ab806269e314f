"""``python -m edgeface.mqtt``: publish JSON-lines events from stdin through the spool (a debugging tool).

Each input line is one event object; ``spooled <event_id>`` is printed once it is on disk. At end of
input the publisher flushes (up to ``--flush-timeout``) and exits; what is left stays spooled.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from edgeface.mqtt.client import MqttPublisher
from edgeface.mqtt.payloads import StatusInfo
from edgeface.mqtt.settings import MqttSettings
from edgeface.pipeline.events import Event
from edgeface.version import __version__


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeface.mqtt", description=__doc__)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--device", required=True)
    parser.add_argument("--prefix", default="edgeface")
    parser.add_argument("--protocol", choices=("3.1.1", "5"), default="3.1.1")
    parser.add_argument("--spool", type=Path, required=True, help="SQLite spool file")
    parser.add_argument("--spool-max-events", type=int, default=10_000)
    parser.add_argument("--keepalive", type=int, default=5)
    parser.add_argument("--flush-timeout", type=float, default=10.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = MqttSettings(
        device=args.device,
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        protocol=args.protocol,
        keepalive=args.keepalive,
        spool_path=args.spool,
        spool_max_events=args.spool_max_events,
    )
    status = StatusInfo(__version__, None, 0, "none", "")
    with MqttPublisher(settings, status) as publisher:
        for line in sys.stdin:
            if not line.strip():
                continue
            event = Event.from_payload(json.loads(line))
            publisher.publish_event(event)
            sys.stdout.write(f"spooled {event.event_id}\n")
            sys.stdout.flush()
        publisher.close(args.flush_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
