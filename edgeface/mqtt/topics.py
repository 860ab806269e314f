"""Topic names of DESIGN §6, built in one place."""

from __future__ import annotations

from dataclasses import dataclass

_FORBIDDEN = ("/", "+", "#", "\0")


def check_level(name: str, value: str) -> str:
    """A single topic level: non-empty, no separators or wildcards."""
    if not value or any(c in value for c in _FORBIDDEN):
        raise ValueError(f"{name}: must be a non-empty MQTT topic level without '/', '+', '#', got {value!r}")
    return value


def check_prefix(prefix: str) -> str:
    """A prefix may span levels (``site/edgeface``) but not contain wildcards or empty levels."""
    if not prefix or any(c in prefix for c in ("+", "#", "\0")) or "" in prefix.split("/"):
        raise ValueError(f"prefix: must be non-empty, without wildcards or empty levels, got {prefix!r}")
    return prefix


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    """The per-device topics: ``{prefix}/{device}/...``."""

    prefix: str
    device: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        check_level("device", self.device)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.device}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    @property
    def gallery_state(self) -> str:
        return f"{self.base}/gallery/state"


def fleet_gallery(prefix: str, fleet: str) -> str:
    """Retained signed manifest of a fleet's newest gallery."""
    return f"{check_prefix(prefix)}/fleet/{check_level('fleet', fleet)}/gallery"


def fleet_gallery_chunk(prefix: str, fleet: str, version: int, n: int) -> str:
    """Retained payload chunk ``n`` of gallery ``version``."""
    if version < 0 or n < 0:
        raise ValueError(f"gallery chunk: version and n must be >= 0, got {version}, {n}")
    return f"{fleet_gallery(prefix, fleet)}/{version}/{n}"
