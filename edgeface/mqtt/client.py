"""MqttPublisher: docs/design.md §6 over paho-mqtt 2.x, with events delivered at-least-once from an on-disk
spool.

Events go to the spool first; a sender thread hands at most ``max_inflight`` of them to paho at a time, in
spool order, and deletes each one only when its PUBACK arrives. paho keeps just that in-flight window in
RAM (and re-sends it after a reconnect); everything else waits on disk, so a restart loses nothing.
Threads: paho's network loop runs the callbacks, which only enqueue work; the sender thread alone maps
message ids to spool rows and writes to the spool, so no lock is held across a paho call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeface.errors import EdgefaceError
from edgeface.mqtt import payloads
from edgeface.mqtt.health import SpoolHealth
from edgeface.mqtt.network import ReportingClient
from edgeface.mqtt.payloads import StatusInfo
from edgeface.mqtt.settings import MqttSettings, read_credentials
from edgeface.mqtt.spool import Spool
from edgeface.mqtt.tls import tls_context
from edgeface.mqtt.topics import DeviceTopics
from edgeface.pipeline.events import Event
from edgeface.util.logsafe import printable
from edgeface.util.timestamps import rfc3339

log = logging.getLogger(__name__)

MessageCallback = Callable[[str, bytes], None]
_EVENT_QOS = 1


class PublisherClosedError(EdgefaceError):
    """publish_event() was called after close()."""


@dataclass(frozen=True, slots=True)
class PublisherStats:
    connected: bool
    spooled: int  # events written to the spool by this process
    sent: int  # spooled events handed to the network (re-sends after a reconnect not counted)
    acked: int  # PUBACKs received, each deleting one spooled event
    rejected: int  # PUBACKs with an MQTT 5 failure reason code (deleted, logged)
    dropped: int  # events dropped by the spool bound, over the spool file's life
    pending: int  # events in the spool now (in flight included)
    inflight: int
    reconnects: int
    spool: SpoolHealth  # quarantined files, events lost / dropped on a full disk, disk or memory mode

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``spool`` is nested as ``SpoolHealth.as_dict()``."""
        values: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        values["spool"] = self.spool.as_dict()
        return values


@dataclass(frozen=True, slots=True)
class _Ack:
    mid: int
    failed: bool


class MqttPublisher:
    """Publishes status, events, metrics and gallery state of one device; use ``with`` or start()/close()."""

    def __init__(self, settings: MqttSettings, status: StatusInfo) -> None:
        self.settings = settings
        self.topics = DeviceTopics(settings.prefix, settings.device)
        self._status = status
        self._gallery_state: bytes | None = None
        self._subscriptions: dict[str, tuple[int, MessageCallback]] = {}
        self._connect_hooks: list[Callable[[], None]] = []
        self._work: queue.SimpleQueue[_Ack | None] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}  # paho mid -> spool id; sender thread only
        self._counts = dict.fromkeys(("spooled", "sent", "acked", "rejected", "connects", "unencodable"), 0)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self._final_stats: PublisherStats | None = None
        self._failures = 0  # consecutive failed connection attempts, for quieter logs
        self._sender: threading.Thread | None = None
        self._spool = Spool(
            settings.spool_path,
            settings.spool_max_events,
            memory_events=settings.spool_memory_events,
            retry_s=settings.spool_retry_s,
            max_pages=settings.spool_max_pages,
        )
        self._status_health = self._spool.health()  # what the last retained status said
        try:
            self._client = self._make_client()
        except BaseException:
            self._spool.close()
            raise

    def _make_client(self) -> ReportingClient:
        s = self.settings
        v5 = s.protocol == "5"
        client = ReportingClient(
            CallbackAPIVersion.VERSION2,
            client_id=s.effective_client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
        )
        client.suppress_exceptions = True
        client.enable_logger(_paho_logger())
        client.max_inflight_messages_set(s.max_inflight + 8)  # the window plus retained state messages
        client.max_queued_messages_set(s.max_inflight + 64)  # hard bound on paho's RAM queue
        client.reconnect_delay_set(s.reconnect_min_s, s.reconnect_max_s)
        if s.tls is not None:
            client.tls_set_context(tls_context(s.tls))
            client.tls_insecure_set(s.tls.insecure)
        if s.credentials_file is not None:
            credentials = read_credentials(s.credentials_file)
            client.username_pw_set(credentials.username, credentials.password)
        client.will_set(self.topics.status, self._status_bytes("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_message = self._on_unexpected_message
        return client

    # lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; a broker that is down now is retried with back-off."""
        s = self.settings
        log.info(
            "MQTT: connecting to %s:%d as %s (MQTT %s)", s.host, s.port, s.effective_client_id, s.protocol
        )
        self._client.connect_async(s.host, s.port, s.keepalive)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._sender_loop, name="edgeface-mqtt-sender", daemon=True)
        self._sender.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def failure(self) -> str | None:
        """Why this publisher can no longer deliver (its network or sender thread ended while open), or
        None while it can (connected, or retrying with back-off). The daemon stops vouching and exits on it."""
        if self._closed or self._sender is None:
            return None
        if not self._client.network_alive:
            return f"MQTT network thread ended: {self._client.ended_by or 'unknown reason'}"
        if not self._sender.is_alive():
            return "MQTT sender thread ended"
        return None

    def close(self, flush_timeout: float = 5.0) -> None:
        """Wait (up to ``flush_timeout``) for the spool to drain, publish retained ``offline``, disconnect.

        While the broker is unreachable this waits the whole ``flush_timeout``. What is not acknowledged
        by then stays in the spool and is sent after the next start.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + flush_timeout
        if self._sender is not None:
            while len(self._spool) > 0 and time.monotonic() < deadline:
                time.sleep(0.02)  # also covers a (re)connect still under way
            if self.connected:
                info = self._client.publish(
                    self.topics.status, self._status_bytes("offline"), qos=1, retain=True
                )
                status_deadline = max(deadline, time.monotonic() + 1.0)  # "offline" gets a moment
                while self.connected and not info.is_published() and time.monotonic() < status_deadline:
                    time.sleep(0.01)
            self._client.disconnect()
            self._client.loop_stop()
            self._stopping.set()
            self._work.put(None)
            self._sender.join(timeout=5)
        self._final_stats = self.stats()
        left = self._final_stats.pending
        if left:
            log.info("MQTT: %d event(s) stay in the spool for the next start", left)
        self._spool.close()

    def __enter__(self) -> MqttPublisher:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # publishing ---------------------------------------------------------------------------------------
    def publish_event(self, event: Event) -> None:
        """Spool a recognition event (committed to disk before this returns), then send it.

        A spool problem never raises here: on a full disk the event waits in memory (see ``spool_health``).
        """
        if self._closed:
            raise PublisherClosedError("MqttPublisher.publish_event: the publisher is closed")
        try:
            payload = payloads.encode(event.payload())
        except (
            ValueError
        ) as exc:  # a value no check upstream should have let through: lose one event, not the door
            self._counts["unencodable"] += 1
            log.error(
                "MQTT: event %s dropped, it cannot be encoded: %s",
                printable(event.event_id, 40),
                printable(exc),
            )
            return
        self._spool.put(self.topics.events, payload, _EVENT_QOS)
        self._counts["spooled"] += 1
        self._work.put(_Ack(-1, False))  # wake the sender

    def publish_metrics(self, metrics: payloads.Metrics) -> bool:
        """QoS 0, not spooled, skipped while disconnected; True if handed to the network."""
        if not self.connected:
            return False
        try:
            payload = payloads.encode(metrics.payload())
        except ValueError as exc:
            log.error("MQTT: metrics skipped, they cannot be encoded: %s", printable(exc))
            return False
        info = self._client.publish(self.topics.metrics, payload, qos=0)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish_gallery_state(self, state: Mapping[str, Any]) -> None:
        """Retained; the latest one is re-published on every (re)connect."""
        try:
            self._gallery_state = payloads.encode(state)
        except ValueError as exc:
            log.error("MQTT: gallery state not published, it cannot be encoded: %s", printable(exc))
            return
        if self.connected:
            self._client.publish(self.topics.gallery_state, self._gallery_state, qos=1, retain=True)

    def set_status(self, status: StatusInfo) -> None:
        """New gallery or model: re-publish the retained ``online`` status and update the Last Will."""
        self._status = status
        self._client.will_set(self.topics.status, self._status_bytes("offline"), qos=1, retain=True)
        if self.connected:
            self._client.publish(self.topics.status, self._status_bytes("online"), qos=1, retain=True)

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` after every (re)connect, on paho's network thread (keep it short)."""
        self._connect_hooks.append(hook)

    def publish_message(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        props: Properties | None = None,
    ) -> bool:
        """A message outside the spool (discovery, presence, snapshots): skipped while disconnected (the
        caller re-publishes its retained state from a connect hook); True if handed to the network."""
        if self._closed or not self.connected:
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        """Call ``callback(topic, payload)`` for each message; re-subscribed after every reconnect.

        A callback that raises is logged and the loop carries on.
        """
        self._subscriptions[topic_filter] = (qos, callback)
        self._client.message_callback_add(topic_filter, _guarded(callback))
        if self.connected:
            self._client.subscribe(topic_filter, qos)

    def unsubscribe(self, topic_filter: str) -> None:
        self._subscriptions.pop(topic_filter, None)
        self._client.message_callback_remove(topic_filter)
        if self.connected:
            self._client.unsubscribe(topic_filter)

    @property
    def spool_health(self) -> SpoolHealth:
        """Quarantined spool files, events lost or dropped, disk or memory mode (also in stats and status)."""
        return self._spool.health()

    def stats(self) -> PublisherStats:
        if self._final_stats is not None:
            return self._final_stats
        c = self._counts
        return PublisherStats(
            connected=self.connected,
            spooled=c["spooled"],
            sent=c["sent"],
            acked=c["acked"],
            rejected=c["rejected"],
            dropped=self._spool.dropped,
            pending=len(self._spool),
            inflight=len(self._inflight),
            reconnects=max(0, c["connects"] - 1),
            spool=self._spool.health(),
        )

    def _status_bytes(self, state: str) -> bytes:
        health = self._spool.health()
        self._status_health = health
        spool = health if health.degraded else None  # a healthy device keeps the §6 payload unchanged
        try:
            return payloads.encode(payloads.status_payload(state, self._status, spool=spool))
        except ValueError as exc:  # never let the status (or the Last Will) stop us connecting
            log.error("MQTT: status cannot be encoded (%s); publishing a minimal one", printable(exc))
            return payloads.encode({"state": state, "ts": rfc3339(), "version": self._status.version})

    def _refresh_status(self) -> None:
        """Re-publish the retained status (and the Last Will) when the spool health changed."""
        if self._closed or self._spool.health() == self._status_health:
            return
        self._client.will_set(self.topics.status, self._status_bytes("offline"), qos=1, retain=True)
        if self.connected:
            self._client.publish(self.topics.status, self._status_bytes("online"), qos=1, retain=True)

    # paho callbacks (network thread): keep them short, never raise --------------------------------------
    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT: broker refused the connection: %s", printable(reason))
            return
        self._counts["connects"] += 1
        self._failures = 0
        log.info("MQTT: connected to %s:%d", self.settings.host, self.settings.port)
        client.publish(self.topics.status, self._status_bytes("online"), qos=1, retain=True)
        if self._gallery_state is not None:
            client.publish(self.topics.gallery_state, self._gallery_state, qos=1, retain=True)
        for topic_filter, (qos, _) in list(self._subscriptions.items()):
            client.subscribe(topic_filter, qos)
        self._connected.set()
        for hook in list(self._connect_hooks):
            try:
                hook()
            except Exception:  # a hook's bug must not stop the connection
                log.exception("MQTT: connect hook failed")
        self._work.put(_Ack(-1, False))

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._closed:
            log.warning("MQTT: disconnected (%s); reconnecting with back-off", printable(reason))

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._failures += 1
        level = logging.WARNING if self._failures in (1, 10) or self._failures % 100 == 0 else logging.DEBUG
        log.log(
            level,
            "MQTT: cannot reach %s:%d (attempt %d); events wait in the spool",
            self.settings.host,
            self.settings.port,
            self._failures,
        )

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._work.put(_Ack(mid, bool(getattr(reason, "is_failure", False))))

    def _on_unexpected_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        log.debug("MQTT: message on a topic without a callback (%d bytes)", len(message.payload))

    # sender thread ------------------------------------------------------------------------------------
    def _sender_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                items = [self._work.get(timeout=1.0)]
            except queue.Empty:
                items = []
            while not self._work.empty():  # this thread is the only consumer
                items.append(self._work.get_nowait())
            try:
                self._handle_acks([item for item in items if item is not None])
                self._spool.maintain()
                self._fill_window()
                self._refresh_status()
            except Exception:
                log.exception("MQTT sender: unexpected error; retrying in 1 s")
                self._stopping.wait(1.0)

    def _handle_acks(self, acks: list[_Ack]) -> None:
        """Delete acknowledged events from the spool, a batch per transaction (one fsync)."""
        done: list[int] = []
        for ack in acks:
            spool_id = self._inflight.pop(ack.mid, None)
            if spool_id is None:
                continue  # a wake-up, or the ack of a status/discovery/gallery-state message
            done.append(spool_id)
            if ack.failed:
                self._counts["rejected"] += 1
                log.error("MQTT: broker rejected event (spool id %d); it is deleted, not retried", spool_id)
            else:
                self._counts["acked"] += 1
        if done:
            self._spool.ack_many(done)

    def _fill_window(self) -> None:
        room = self.settings.max_inflight - len(self._inflight)
        if room <= 0 or not self.connected:
            return
        # by the in-flight set, not an id watermark: events can appear below it (a spool file readable again)
        for message in self._spool.pending(room, exclude=self._inflight.values()):
            info = self._client.publish(
                message.topic, message.payload, qos=message.qos, properties=self._props()
            )
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.warning("MQTT: paho refused spool id %d (%s); retrying later", message.id, info.rc)
                return
            self._inflight[info.mid] = message.id
            self._counts["sent"] += 1

    def _props(self) -> Properties | None:
        if self.settings.protocol != "5":
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.PayloadFormatIndicator = 1
        props.ContentType = "application/json"
        return props


class _DropReconnectNoise(logging.Filter):
    """paho logs an ERROR on every retry while the broker is away; _on_connect_fail says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


def _paho_logger() -> logging.Logger:
    logger = logging.getLogger("edgeface.mqtt.paho")
    if not any(isinstance(f, _DropReconnectNoise) for f in logger.filters):
        logger.addFilter(_DropReconnectNoise())
    return logger


def _guarded(callback: MessageCallback) -> Callable[[paho.Client, Any, paho.MQTTMessage], None]:
    """Wrap a subscriber callback so bad input or a bug in it is logged, never kills paho's loop."""

    def handler(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("MQTT: ignored a message whose topic is not UTF-8")
            return
        try:
            callback(topic, bytes(message.payload))
        except Exception as exc:  # one escaped line (topic and message come from the broker); trace at DEBUG
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "MQTT: subscriber callback for %s failed on a %d-byte message: %s: %s (%s:%d)",
                printable(topic),
                len(message.payload),
                type(exc).__name__,
                printable(exc),
                Path(where.filename).name,
                where.lineno or 0,
            )
            log.debug("MQTT: subscriber callback traceback", exc_info=True)

    return handler
