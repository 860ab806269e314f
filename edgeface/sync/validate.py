"""The bounds a device puts on a bundle's fields, as plain functions the server side calls too.

`gallery build` refuses any argument the device would reject by calling these same functions, so the two
cannot drift; the device's manifest parser turns their `ValueError` into `Rejected("manifest_invalid")`.
Each returns the checked value or raises `ValueError` with a message that names the value.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from edgeface.util.logsafe import is_printable_char, printable

MAX_VERSION = 2**53 - 1  # JSON consumers that read numbers as doubles keep every version exact
DEFAULT_MAX_VERSION_JUMP = 1_000_000
MAX_FLEET_CHARS = 64
MAX_LIFETIME_DAYS = 100 * 366
CHUNK_BYTES_MAX = 256 * 1024  # docs/design.md §6: each chunk <= 256 KiB
_TOPIC_FORBIDDEN = frozenset("/+#\0")


def valid_topic_level(name: object, what: str = "fleet") -> str:
    """One MQTT topic level (a fleet name, a device id): 1..64 characters, no ``/ + #``, no control or
    bidi characters."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {printable(repr(name), 80)}")
    if len(name) > MAX_FLEET_CHARS:
        raise ValueError(f"{what} must be at most {MAX_FLEET_CHARS} characters, got {len(name)}")
    bad = sorted({c for c in name if c in _TOPIC_FORBIDDEN or not is_printable_char(c)})
    if bad:
        shown = printable("".join(bad), 40)
        raise ValueError(
            f"{what} '{printable(name, 80)}' must be a single MQTT topic level: it contains '{shown}'"
        )
    return name


def valid_fleet(name: object) -> str:
    """A fleet name: one MQTT topic level (`valid_topic_level`)."""
    return valid_topic_level(name, "fleet")


def valid_version(version: object, name: str = "version") -> int:
    """A gallery version: an integer in 1..2**53-1 (not a bool)."""
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{name} must be an integer, got {printable(repr(version), 80)}")
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"{name} must be in 1..{MAX_VERSION}, got {printable(version, 40)}")
    return version


def check_version_jump(version: int, running: int, max_jump: int) -> None:
    """A device moves forward by at most `max_jump` versions at once (a huge signed version cannot lock it)."""
    if version - running > max_jump:
        raise ValueError(
            f"version {version} is more than {max_jump} above running {running} (sync.max_version_jump)"
        )


def valid_max_version_jump(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_VERSION:
        raise ValueError(f"max_version_jump must be an integer in 1..{MAX_VERSION}, got {value!r}")
    return value


def valid_lifetime_days(days: object) -> float:
    """`gallery build --expires DAYS`: finite, > 0 and at most 100 years."""
    if not isinstance(days, int | float) or isinstance(days, bool) or not math.isfinite(days):
        raise ValueError(f"expires must be a finite number of days, got {printable(repr(days), 40)}")
    if not 0 < days <= MAX_LIFETIME_DAYS:
        raise ValueError(f"expires must be > 0 and <= {MAX_LIFETIME_DAYS} days, got {days:g}")
    return float(days)


def check_lifetime(created: datetime, expires: datetime | None) -> None:
    """A bundle that expires must expire after it was created, within 100 years."""
    if expires is None:
        return
    if expires <= created:
        raise ValueError(f"expires {expires.isoformat()} is not after created {created.isoformat()}")
    if expires - created > timedelta(days=MAX_LIFETIME_DAYS):
        raise ValueError(f"expires {expires.isoformat()} is more than {MAX_LIFETIME_DAYS} days after created")


def valid_chunk_bytes(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= CHUNK_BYTES_MAX:
        raise ValueError(f"chunk_bytes must be an integer in 1..{CHUNK_BYTES_MAX}, got {value!r}")
    return value


MAX_URL_CHARS = 2048


def valid_payload_url(url: object, sha256: str) -> str:
    """A payload URL a manifest may sign: http(s), printable, at most 2048 characters, and content-addressed
    (its last path segment is the payload's sha256, so a CDN may cache it forever)."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_CHARS:
        raise ValueError(
            f"url must be a string of 1..{MAX_URL_CHARS} characters, got {printable(repr(url), 80)}"
        )
    if not url.startswith(("https://", "http://")) or any(
        not is_printable_char(c) or c.isspace() for c in url
    ):
        raise ValueError(
            f"url must be an http(s) URL without spaces or control characters: {printable(url, 80)}"
        )
    if not url.endswith("/" + sha256):
        raise ValueError(f"url must end with /<payload sha256> (content-addressed): {printable(url, 120)}")
    return url


def payload_url(url_base: str, sha256: str) -> str:
    """The content-addressed URL of a payload under `url_base` (checked as a device checks it)."""
    return valid_payload_url(url_base.rstrip("/") + "/" + sha256, sha256)
