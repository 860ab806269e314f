"""paho's client with a network thread that says why it ended (the publisher's health reads it)."""

from __future__ import annotations

import logging

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from edgeface.util.logsafe import printable

log = logging.getLogger(__name__)


class ReportingClient(paho.Client):
    """paho's client whose network thread says why it ended: paho retries OSError only, so anything else
    (an exception in a connect packet, a BaseException from a callback) would end it silently."""

    ended_by: str | None = None
    _started = False

    @property
    def network_alive(self) -> bool:
        return not self._started or self.ended_by is None

    def loop_start(self) -> MQTTErrorCode:
        self._started = True
        return super().loop_start()

    def _thread_main(self) -> None:
        try:
            super()._thread_main()
        except BaseException as exc:
            self.ended_by = printable(f"{type(exc).__name__}: {exc}", 300)
            log.error("MQTT: network thread died: %s", self.ended_by)
        else:
            if not self._thread_terminate:
                self.ended_by = "the network loop returned"
