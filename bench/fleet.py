"""Fleet benchmark: N lightweight doors (the device's own sync client: signature, manifest and payload checks,
atomic store write; no camera, no index build) on one mosquitto, payloads by URL from one nginx.

Phase "full": every door starts empty and a full URL bundle is published; phase "delta": a 1% change is
published as a URL delta with its full bundle and catch-up chain. Per phase: seconds until every door runs
the new version (and the p50/p95 of the per-door times), bytes nginx served (its access log), and messages
the broker received and sent (its `$SYS` counters). Each door is one paho client (its own network thread)
plus the sync client's worker thread; doors run in worker processes of at most 250 each (paho's network
loop uses select(), which cannot watch descriptors above 1,024 in one process).

    python bench/fleet.py --quick                          # 50 doors
    python bench/fleet.py --out bench/results/fleet.json   # 1,000 doors
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import emit, percentiles, rss_bytes

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    import paho.mqtt.client as mqtt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from edgeface.demo.localweb import LocalWeb
    from edgeface.identity.gallery import Gallery
    from edgeface.sync.fetch import UrlFetchSettings

log = logging.getLogger("bench.fleet")
FLEET = "bench"
PREFIX = "edgeface"
MODEL = "ab" * 32


class SysCounters:
    """The broker's `$SYS` message counters (published every `sys_interval` s)."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.values: dict[str, int] = {}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sys")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("$SYS/broker/messages/+", qos=0)
        self.client.subscribe("$SYS/broker/load/bytes/+", qos=0)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        if message.payload.isdigit():
            self.values[message.topic.removeprefix("$SYS/broker/")] = int(message.payload)

    def snapshot(self) -> dict[str, int]:
        time.sleep(1.3)  # one more $SYS interval, so the counters include what just happened
        return dict(self.values)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Door:
    def __init__(
        self,
        index: int,
        root: Path,
        port: int,
        public_key: Ed25519PublicKey,
        fetch: UrlFetchSettings,
        sync_timeout: float,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from edgeface.identity.gallery import GalleryStore
        from edgeface.sync.apply import DevicePolicy
        from edgeface.sync.client import GallerySyncClient
        from edgeface.sync.mqtt import PahoTransport
        from edgeface.sync.settings import SyncClientSettings

        self.applied: dict[int, float] = {}
        self.disconnects = 0
        name = f"door-{index:05d}"
        settings = SyncClientSettings(
            DevicePolicy(FLEET, MODEL), name, PREFIX, url=fetch, fetch_timeout_s=sync_timeout
        )
        self.sync = GallerySyncClient(settings, public_key, GalleryStore(root / name), self._on_gallery)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        PahoTransport.attach_to(self.client, self.sync)
        self.client.on_disconnect = self._on_disconnect
        # paho only doubles the delay and adds it to a deadline, so half a second works though its hint says int
        self.client.reconnect_delay_set(0.5, 5)  # type: ignore[arg-type]
        self.client.connect_async("127.0.0.1", port, keepalive=60)  # paho retries a refused or slow connect
        self.client.loop_start()

    def _on_disconnect(self, *args: object) -> None:
        self.disconnects += 1

    def _on_gallery(self, gallery: Gallery) -> None:
        self.applied[gallery.version] = time.monotonic()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.sync.close()


def make_gallery(n: int, dim: int, start: int = 0, version: int = 1) -> Gallery:
    import numpy as np

    from edgeface.identity.gallery import Gallery

    rng = np.random.default_rng(start)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = tuple(f"person-{i:07d}" for i in range(start, start + n))
    return Gallery(ids, tuple(f"Person {i}" for i in ids), (5,) * n, vectors, MODEL, version)


def changed(gallery: Gallery, fraction: float) -> Gallery:
    """`gallery` with `fraction` of its identities replaced by new ones, as the next version."""
    import numpy as np

    from edgeface.identity.gallery import Gallery

    k = max(1, round(len(gallery) * fraction))
    kept = gallery.remove(set(gallery.ids[:k]))
    new = make_gallery(k, gallery.dim, start=10_000_000)
    return Gallery(kept.ids + new.ids, kept.names + new.names, kept.samples + new.samples,
                   np.vstack([kept.vectors, new.vectors]), MODEL, gallery.version + 1)  # fmt: skip


DOORS_PER_PROCESS = 250


def door_worker(first: int, count: int, root: Path, port: int, conn: Connection) -> None:
    """A worker process: `count` doors; per phase, the seconds each took to run `version` (sent back)."""
    from edgeface.sync.fetch import UrlFetchSettings
    from edgeface.sync.signing import load_public_key

    logging.getLogger("edgeface").setLevel(logging.ERROR)
    threading.stack_size(512 * 1024)  # two threads per door; their default 8 MiB stacks are mostly unused
    public_key = load_public_key(root / "k.pub")
    fetch = UrlFetchSettings(allow_http=True)
    doors = [Door(i, root / "doors", port, public_key, fetch, 60.0) for i in range(first, first + count)]
    while not all(d.client.is_connected() for d in doors):
        time.sleep(0.05)
    conn.send(rss_bytes())
    while (order := conn.recv()) is not None:
        version, started, deadline = order
        while time.monotonic() < deadline and any(version not in d.applied for d in doors):
            time.sleep(0.05)
        times = [d.applied[version] - started for d in doors if version in d.applied]
        conn.send((times, rss_bytes(), sum(d.disconnects for d in doors)))
    for door in doors:
        door.close()


def run_phase(
    name: str,
    workers: list[Connection],
    doors: int,
    version: int,
    publish: Callable[[], object],
    web: LocalWeb,
    counters: SysCounters,
    timeout: float,
) -> dict[str, Any]:
    served, messages = web.bytes_served(), counters.snapshot()
    started = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every worker process
    publish()
    published_s = time.monotonic() - started  # the publisher's connect, state read and acknowledged sends
    for conn in workers:
        conn.send((version, started, started + timeout))
    done: list[float] = []
    rss = disconnects = 0
    for conn in workers:
        times, worker_rss, worker_disconnects = conn.recv()
        done += times
        rss += worker_rss
        disconnects += worker_disconnects
    after = counters.snapshot()
    result: dict[str, Any] = {
        "publish_s": round(published_s, 3),
        "doors_applied": len(done),
        "seconds_all_applied": round(max(done), 3) if len(done) == doors else None,
        "per_door_s": percentiles(done) if done else None,
        "bytes_served": web.bytes_served() - served,
        "door_disconnects_so_far": disconnects,  # broker dropped a door (e.g. keepalive missed while starved)
    }
    for key in ("messages/received", "messages/sent", "load/bytes/received", "load/bytes/sent"):
        if key in after and key in messages:
            result["broker_" + key.replace("/", "_")] = after[key] - messages[key]
    result["_rss"] = rss
    log.info("%s: %s", name, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--doors", type=int, default=1000)
    parser.add_argument("--identities", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per phase")
    parser.add_argument("--quick", action="store_true", help="50 doors")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("edgeface").setLevel(logging.WARNING)
    doors_n = 50 if args.quick else args.doors

    import multiprocessing

    from edgeface.demo.localbroker import free_port, start_mosquitto
    from edgeface.demo.localweb import start_nginx
    from edgeface.server.build import build_bundle, write_payload_file
    from edgeface.server.publish import publish
    from edgeface.server.signing import generate_keypair, load_private_key
    from edgeface.sync.mqtt import BrokerOptions

    with tempfile.TemporaryDirectory(prefix="edgeface-fleet-") as tmp:
        root = Path(tmp)
        generate_keypair(root / "k.pem", root / "k.pub")
        key = load_private_key(root / "k.pem")
        port = free_port()
        (root / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nsys_interval 1\nmax_connections -1\n"
            "log_dest none\n"  # its stderr is a pipe nobody reads: 1,000 connect lines would fill it
        )
        broker = start_mosquitto(root / "mosquitto.conf", port)
        (root / "www").mkdir()
        web = start_nginx(root / "www", root / "nginx", connections=4 * doors_n + 64)
        context = multiprocessing.get_context("fork")  # before this process starts any thread
        workers, processes = [], []
        for first in range(0, doors_n, DOORS_PER_PROCESS):
            mine, theirs = context.Pipe()
            count = min(DOORS_PER_PROCESS, doors_n - first)
            processes.append(context.Process(target=door_worker, args=(first, count, root, port, theirs)))
            processes[-1].start()
            workers.append(mine)
        counters = SysCounters(port)
        options = BrokerOptions("127.0.0.1", port)
        try:
            connect_started = time.monotonic()
            rss_idle = sum(conn.recv() for conn in workers)
            connect_s = time.monotonic() - connect_started
            v1 = make_gallery(args.identities, args.dim)
            full1 = build_bundle(v1, fleet=FLEET, version=1, key=key, url_base=web.base_url)
            write_payload_file(full1, web.root)
            phases = {"full": run_phase("full", workers, doors_n, 1,
                                        lambda: publish(options, PREFIX, FLEET, full1, None, 0.2),
                                        web, counters, args.timeout)}  # fmt: skip
            v2 = changed(v1, 0.01)
            delta2 = build_bundle(v2, fleet=FLEET, version=2, key=key, base=v1, url_base=web.base_url)
            full2 = build_bundle(v2, fleet=FLEET, version=2, key=key, url_base=web.base_url)
            for bundle in (delta2, full2):
                write_payload_file(bundle, web.root)
            phases["delta"] = run_phase("delta", workers, doors_n, 2,
                                        lambda: publish(options, PREFIX, FLEET, delta2, full2, 0.2),
                                        web, counters, args.timeout)  # fmt: skip
            rss_after = phases["delta"].pop("_rss")
            phases["full"].pop("_rss")
        finally:
            for conn in workers:
                conn.send(None)
            for process in processes:
                process.join(60)
            counters.close()
            web.stop()
            broker.terminate()
            broker.wait(10)
    from edgeface.sync.bundle import unpack_bundle

    params = {
        "quick": args.quick,
        "doors": doors_n,
        "identities": args.identities,
        "dim": args.dim,
        "delta_fraction": 0.01,
        "payload_bytes": {
            "full": len(unpack_bundle(full1).payload),
            "delta": len(unpack_bundle(delta2).payload),
        },
        "transport": "one mosquitto + one nginx (plain HTTP) on loopback",
        "processes": len(processes),
        "per_door": "GallerySyncClient + its own paho client: verify, store atomically; no index build",
    }
    results = {
        "connect_all_s": round(connect_s, 3),
        "phases": phases,
        "rss_mib": round(rss_after / 2**20, 1),  # all door processes, after both updates
        "rss_per_door_kib": round(rss_after / doors_n / 1024, 1),
        "rss_idle_per_door_kib": round(rss_idle / doors_n / 1024, 1),
    }
    emit("fleet", params, results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
