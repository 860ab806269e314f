"""Typed MQTT settings (the ``[mqtt]`` section of DESIGN §7) and credentials read from a file."""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from edgeface.errors import ConfigError
from edgeface.logsafe import printable
from edgeface.mqtt.topics import check_level, check_prefix

log = logging.getLogger(__name__)

PROTOCOLS = ("3.1.1", "5")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """CA bundle to verify the broker; optional client certificate and key for mutual TLS.

    ``insecure`` skips the host name check only (the chain is still verified); never use it in a fleet.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("mqtt.tls: cert_file and key_file must be given together")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    device: str
    host: str = "localhost"
    port: int = 1883
    client_id: str = ""
    prefix: str = "edgeface"
    protocol: str = "3.1.1"
    keepalive: int = 30
    tls: TlsSettings | None = None
    credentials_file: Path | None = None
    spool_path: Path = Path("/var/lib/edgeface/spool.sqlite3")
    spool_max_events: int = 10_000
    spool_memory_events: int = 1000  # RAM queue while the disk cannot take events (full); oldest dropped
    spool_retry_s: float = 5.0  # how often a full or unwritable spool is retried
    spool_max_pages: int | None = None  # optional cap on the spool file, in SQLite pages (4 KiB)
    ha_discovery: bool = False
    ha_discovery_prefix: str = "homeassistant"
    max_inflight: int = 16
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30

    def __post_init__(self) -> None:
        try:
            check_level("mqtt.device", self.device)
            check_prefix(self.prefix)
            check_prefix(self.ha_discovery_prefix)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not self.host:
            raise ConfigError("mqtt.host: must not be empty")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"mqtt.port: must be in 1..65535, got {self.port}")
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"mqtt.protocol: must be one of {PROTOCOLS}, got {self.protocol!r}")
        if not 5 <= self.keepalive <= 65535:
            raise ConfigError(f"mqtt.keepalive: must be in 5..65535 seconds, got {self.keepalive}")
        if self.spool_max_events < 1:
            raise ConfigError(f"mqtt.spool_max_events: must be >= 1, got {self.spool_max_events}")
        if self.spool_memory_events < 1:
            raise ConfigError(f"mqtt.spool_memory_events: must be >= 1, got {self.spool_memory_events}")
        if not self.spool_retry_s > 0:
            raise ConfigError(f"mqtt.spool_retry_s: must be > 0, got {self.spool_retry_s}")
        if self.spool_max_pages is not None and self.spool_max_pages < 8:
            raise ConfigError(f"mqtt.spool_max_pages: must be >= 8 when set, got {self.spool_max_pages}")
        if not 1 <= self.max_inflight <= 1000:
            raise ConfigError(f"mqtt.max_inflight: must be in 1..1000, got {self.max_inflight}")
        if not 1 <= self.reconnect_min_s <= self.reconnect_max_s:
            raise ConfigError("mqtt.reconnect_min_s: must be >= 1 and <= mqtt.reconnect_max_s")

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"edgeface-{self.device}"


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def read_credentials(path: Path) -> Credentials:
    """``username:password`` on one line, or the username and the password on two lines.

    The password is never logged or put in an exception message.
    """
    shown = printable(path)
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"mqtt.credentials_file: cannot read {shown}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"mqtt.credentials_file: {shown} is not UTF-8 text (byte {exc.start}); "
            "write 'username:password' as UTF-8"
        ) from None
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        log.warning("mqtt.credentials_file %s is world-readable; chmod 0640 or 0600 it", shown)
    lines = [line.strip("\r") for line in text.split("\n") if line.strip()]
    if len(lines) == 1 and ":" in lines[0]:
        username, password = lines[0].split(":", 1)
    elif len(lines) == 2:
        username, password = lines
    else:
        raise ConfigError(
            f"mqtt.credentials_file: {shown} must hold 'username:password' on one line "
            "or the username and the password on two lines"
        )
    if not username.strip():
        raise ConfigError(f"mqtt.credentials_file: {shown} has an empty username")
    return Credentials(username.strip(), password)
