"""Topic names of docs/design.md §6, built in one place: nothing else in edgeface writes a topic string.

Per device `{prefix}/{device}/{status,events,metrics,gallery/state}`; per fleet `{prefix}/fleet/{fleet}/gallery`
and its chunks `.../gallery/{version}/{n}`; subscription filters with `+` for tools that watch every device or
every chunk; and the Home Assistant discovery topic.
"""

from __future__ import annotations

from dataclasses import dataclass

_FORBIDDEN = ("/", "+", "#", "\0")
_ANY = "+"  # single-level wildcard, only in subscription filters

STATUS, EVENTS, METRICS, GALLERY_STATE = "status", "events", "metrics", "gallery/state"
PRESENCE, SNAPSHOT = "presence", "snapshot"


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
        return f"{self.base}/{STATUS}"

    @property
    def events(self) -> str:
        return f"{self.base}/{EVENTS}"

    @property
    def metrics(self) -> str:
        return f"{self.base}/{METRICS}"

    @property
    def gallery_state(self) -> str:
        return f"{self.base}/{GALLERY_STATE}"

    @property
    def snapshot(self) -> str:
        """Opt-in JPEG of the aligned face of an event (never retained)."""
        return f"{self.base}/{SNAPSHOT}"

    def presence(self, person: str) -> str:
        """Retained ``ON``/``OFF`` of one enrolled person; `person` is a topic-safe key (`ha_key`)."""
        return f"{self.base}/{PRESENCE}/{check_level('person', person)}"


def every_device(prefix: str, leaf: str) -> str:
    """Subscription filter for one per-device topic (`STATUS`, `EVENTS`, ...) of every device under `prefix`."""
    if leaf not in (STATUS, EVENTS, METRICS, GALLERY_STATE):
        raise ValueError(f"every_device: unknown per-device topic {leaf!r}")
    return f"{check_prefix(prefix)}/{_ANY}/{leaf}"


def fleet_gallery(prefix: str, fleet: str) -> str:
    """Retained signed manifest of a fleet's newest gallery."""
    return f"{check_prefix(prefix)}/fleet/{check_level('fleet', fleet)}/gallery"


def fleet_timestamp(prefix: str, fleet: str) -> str:
    """Retained signed timestamp record: which gallery is current, valid for a short while (under the
    gallery topic, so the broker ACL that lets a door read its fleet's gallery covers it)."""
    return f"{fleet_gallery(prefix, fleet)}/timestamp"


def fleet_gallery_chunk(prefix: str, fleet: str, version: int, n: int) -> str:
    """Retained payload chunk ``n`` of gallery ``version``."""
    if version < 0 or n < 0:
        raise ValueError(f"gallery chunk: version and n must be >= 0, got {version}, {n}")
    return f"{fleet_gallery(prefix, fleet)}/{version}/{n}"


def fleet_gallery_chunks(prefix: str, fleet: str, version: int | None = None) -> str:
    """Subscription filter for the chunks of gallery `version` (of every version when None)."""
    if version is not None and version < 0:
        raise ValueError(f"gallery chunks: version must be >= 0, got {version}")
    return f"{fleet_gallery(prefix, fleet)}/{_ANY if version is None else version}/{_ANY}"


def parse_fleet_gallery_chunk(prefix: str, fleet: str, topic: str) -> tuple[int, int] | None:
    """(version, n) of a chunk topic of this fleet, or None if `topic` is not one."""
    head = fleet_gallery(prefix, fleet) + "/"
    if not topic.startswith(head):
        return None
    version, _, n = topic.removeprefix(head).partition("/")
    if not (version.isdigit() and n.isdigit()):
        return None
    return int(version), int(n)


def ha_discovery_config(discovery_prefix: str, object_id: str) -> str:
    """Home Assistant MQTT discovery: the retained config of sensor `object_id` (the layout before
    entities were grouped under a node; still cleared so an old "last person" sensor goes away)."""
    return f"{check_prefix(discovery_prefix)}/sensor/{check_level('object_id', object_id)}/config"


def ha_entity_config(discovery_prefix: str, component: str, node: str, object_id: str) -> str:
    """Home Assistant MQTT discovery: ``<prefix>/<component>/<node_id>/<object_id>/config``."""
    levels = (
        check_level("component", component),
        check_level("node", node),
        check_level("object_id", object_id),
    )
    return f"{check_prefix(discovery_prefix)}/{'/'.join(levels)}/config"


def ha_node_configs(discovery_prefix: str, node: str) -> str:
    """Subscription filter for every discovery config under one node (any component, any object)."""
    return f"{check_prefix(discovery_prefix)}/{_ANY}/{check_level('node', node)}/{_ANY}/config"


def parse_ha_entity_config(discovery_prefix: str, node: str, topic: str) -> tuple[str, str] | None:
    """(component, object_id) of a config topic under `node`, or None if `topic` is not one."""
    parts = topic.removeprefix(f"{check_prefix(discovery_prefix)}/").split("/")
    if topic == "/".join(parts) or len(parts) != 4 or parts[1] != node or parts[3] != "config":
        return None
    return parts[0], parts[2]


def ha_birth(discovery_prefix: str) -> str:
    """Where Home Assistant announces itself (retained ``online`` after a restart)."""
    return f"{check_prefix(discovery_prefix)}/status"
