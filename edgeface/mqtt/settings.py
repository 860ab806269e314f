"""Typed MQTT settings (the ``[mqtt]`` section of docs/design.md §7) and credentials read from a file."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from edgeface.errors import ConfigError
from edgeface.mqtt.topics import check_level, check_prefix
from edgeface.util.fields import bounded, check_fields
from edgeface.util.files import MAX_CREDENTIALS_BYTES, FileRefused, read_bytes
from edgeface.util.logsafe import is_printable_char, printable

log = logging.getLogger(__name__)

PROTOCOLS = ("3.1.1", "5")
DEFAULT_SPOOL_PATH = Path("/var/lib/edgeface/spool.sqlite3")


def _level(value: str) -> None:
    try:
        check_level("device", value)
    except ValueError:
        raise ValueError(
            f"must be a non-empty MQTT topic level without '/', '+', '#', got {value!r}"
        ) from None


def _prefix(value: str) -> None:
    try:
        check_prefix(value)
    except ValueError:
        raise ValueError(f"must be non-empty, without wildcards or empty levels, got {value!r}") from None


MAX_HOST_CHARS = 253  # RFC 1035: a name of at most 253 characters, labels of 1..63
MAX_LABEL_CHARS = 63
MAX_CLIENT_ID_BYTES = 65535  # an MQTT UTF-8 string's length prefix is 16 bits


def _no_controls(value: str) -> None:
    bad = sorted({c for c in value if not is_printable_char(c)})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad[:4])
        raise ValueError(f"must not hold control, separator or surrogate characters ({codes})")


def _host(value: str) -> None:
    """A host name or an IP literal the socket layer can resolve: what paho would otherwise fail on in its
    network thread, for good (an empty or over-long label makes the IDNA codec raise, not OSError)."""
    if not value:
        raise ValueError("must not be empty")
    _no_controls(value)
    if ":" in value:  # an IPv6 literal
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError(
                f"{printable(value, 80)!r} is not a host name or an IPv6 address (written without brackets)"
            ) from None
        return
    if len(value) > MAX_HOST_CHARS:
        raise ValueError(f"must be at most {MAX_HOST_CHARS} characters, got {len(value)}")
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    for label in labels:
        if not label:
            raise ValueError(f"{printable(value, 80)!r} has an empty label (two dots, or a leading dot)")
        if len(label) > MAX_LABEL_CHARS:
            raise ValueError(f"a label of {printable(value, 80)!r} is {len(label)} characters, at most 63")
        if label.startswith("-") or label.endswith("-") or " " in label:
            raise ValueError(f"label {printable(label, 63)!r} must not start or end with '-' or hold spaces")
    try:
        value.encode("idna")
    except UnicodeError as exc:
        raise ValueError(f"{printable(value, 80)!r} is not a valid host name ({exc})") from None


def check_client_id(value: str) -> None:
    """An MQTT client id: UTF-8 of at most 65535 bytes (the protocol's limit; we cap no lower: brokers
    such as mosquitto accept any length up to it), no NUL or other control characters (the broker drops
    a connection whose client id holds one, with nothing logged on our side)."""
    _no_controls(value)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text") from None
    if size > MAX_CLIENT_ID_BYTES:
        raise ValueError(f"must be at most {MAX_CLIENT_ID_BYTES} bytes of UTF-8, got {size}")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """The `[mqtt.tls]` table: CA bundle to verify the broker; optional client certificate and key for
    mutual TLS. ``insecure`` skips the host name check only (the chain is still verified); never use it in a
    fleet."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("mqtt.tls: cert_file and key_file must be given together")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """The `[mqtt]` config section, parsed straight into this type. `device` and `spool_path` are not set
    in the section: the config binds them to `device.id` and `<device.state_dir>/spool.sqlite3`."""

    device: str = bounded(dataclasses.MISSING, check=_level, from_config=False)
    host: str = bounded("localhost", check=_host)
    port: int = bounded(1883, 1, 65535)
    client_id: str = bounded("", check=check_client_id)  # default: edgeface-<device>
    prefix: str = bounded("edgeface", check=_prefix)
    protocol: str = bounded("3.1.1", choices=PROTOCOLS)
    keepalive: int = bounded(30, 5, 65535)  # seconds; 65535 is the protocol's limit
    tls: TlsSettings | None = None
    credentials_file: Path | None = None  # 'username:password'; never logged
    spool_path: Path = bounded(DEFAULT_SPOOL_PATH, from_config=False)
    # Events kept on disk while the broker is away (about 1 KiB each): the oldest are dropped beyond it.
    spool_max_events: int = bounded(100_000, 1)
    spool_memory_events: int = bounded(1000, 1)  # RAM queue while the disk cannot take events (full)
    spool_retry_s: float = bounded(5.0, 0, 3600, low_open=True)  # how often a full spool is retried
    spool_max_pages: int | None = bounded(None, 8)  # optional cap on the spool file, in SQLite pages (4 KiB)
    ha_discovery: bool = False
    ha_discovery_prefix: str = bounded("homeassistant", check=_prefix)
    max_inflight: int = bounded(16, 1, 1000)
    reconnect_min_s: int = bounded(1, 1, 3600)
    reconnect_max_s: int = bounded(30, 1, 3600)

    def __post_init__(self) -> None:
        check_fields(self, "mqtt")
        try:
            check_client_id(self.effective_client_id)
        except ValueError as exc:
            raise ConfigError(
                f"mqtt.client_id: edgeface-<device.id> {exc}; set a shorter mqtt.client_id"
            ) from None
        if self.reconnect_min_s > self.reconnect_max_s:
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
        text = read_bytes(path, MAX_CREDENTIALS_BYTES, "credentials file").decode("utf-8")
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"mqtt.credentials_file: cannot read {shown}: {exc.strerror}") from None
    except FileRefused as exc:
        raise ConfigError(f"mqtt.credentials_file: {printable(str(exc), 300)}") from None
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
