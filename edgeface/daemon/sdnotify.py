"""sd_notify(3) without dependencies: tell systemd READY, WATCHDOG, STATUS, STOPPING, RELOADING.

Messages go as one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). Without ``$NOTIFY_SOCKET`` (not started by systemd) every call is a no-op returning
False. Sending never raises: a lost notification must not take the daemon down; failures are logged.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from types import TracebackType

log = logging.getLogger(__name__)


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between required ``WATCHDOG=1`` pings (half of ``WatchdogSec=``), or None if disabled.

    None also when ``$WATCHDOG_PID`` names another process (the watchdog is not ours).
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        log.warning("sd_notify: ignoring malformed WATCHDOG_USEC/WATCHDOG_PID")
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 1e6 / 2


class Notifier:
    """A handle on ``$NOTIFY_SOCKET`` read when constructed; close() it or use it as a context manager."""

    def __init__(self, socket_path: str | None = None) -> None:
        self._path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        if self._path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines, e.g. ``notify(READY=1, STATUS="running")``; True if sent."""
        if self._sock is None:
            return False
        # one line per field: a newline inside a value (an exception text in STATUS=) becomes a space
        lines = [f"{key}={' '.join(str(value).splitlines())}" for key, value in fields.items()]
        try:
            self._sock.sendto("\n".join(lines).encode(), _address(self._path))
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self._path, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (required by ``Type=notify-reload``); send ready() after."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        extra = {"STATUS": status} if status else {}
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec, **extra)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
