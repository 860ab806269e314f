"""Fleet status: every door's retained status and gallery state (docs/design.md §6), read back into one row
per door.

The retained messages come from devices (or from whoever can publish on their topics), so each is parsed as
untrusted input: a payload that is not the expected JSON shape becomes a row that says so, with the reason,
never an exception; every string shown is made printable and bounded.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from edgeface.mqtt.topics import GALLERY_STATE, STATUS, check_prefix, every_device
from edgeface.server.publish import _connect, _Retained
from edgeface.sync.mqtt import BrokerOptions
from edgeface.util.logsafe import printable

SHOWN = 120  # characters of any untrusted string in a row


@dataclass(slots=True)
class DoorStatus:
    door: str
    online: bool | None = None  # None: no status seen
    gallery_version: int | None = None  # what the door runs (status, else the state's `running`)
    gallery_count: int | None = None
    last_bundle: int | None = None  # the version the last apply or rejection was about
    applied: str | None = None  # "applied" | "rejected"
    reason: str | None = None
    fleet: str | None = None
    freshness_age_s: float | None = None  # only if the door reports one
    last_seen: str | None = None  # newest timestamp of its status and state
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def door_of(prefix: str, topic: str) -> tuple[str, str] | None:
    """(door, leaf) of `{prefix}/{door}/status` or `{prefix}/{door}/gallery/state`; None otherwise."""
    for leaf in (STATUS, GALLERY_STATE):
        head, tail = f"{prefix}/", f"/{leaf}"
        if topic.startswith(head) and topic.endswith(tail):
            door = topic[len(head) : len(topic) - len(tail)]
            if door and "/" not in door:
                return door, leaf
    return None


def _json_object(raw: bytes, what: str, row: DoorStatus) -> dict[str, Any] | None:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        row.problems.append(f"malformed {what}: not JSON ({printable(exc, 80)})")
        return None
    if not isinstance(doc, dict):
        row.problems.append(f"malformed {what}: not a JSON object")
        return None
    return doc


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return printable(value, SHOWN) if isinstance(value, str) else None


def _timestamp(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value


def _freshness(doc: dict[str, Any]) -> float | None:
    """A door's freshness age in seconds, if its status reports one (`freshness` as a number or {age_s})."""
    value = doc.get("freshness")
    if isinstance(value, dict):
        value = value.get("age_s", value.get("age"))
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value and value >= 0:
        return float(value)
    return None


def read_status(row: DoorStatus, raw: bytes) -> None:
    doc = _json_object(raw, "status", row)
    if doc is None:
        return
    state = doc.get("state")
    if state not in ("online", "offline"):
        row.problems.append(f"malformed status: state {printable(repr(state), 40)}")
    else:
        row.online = state == "online"
    gallery = doc.get("gallery")
    if isinstance(gallery, dict):
        row.gallery_version = _int(gallery.get("version"))
        row.gallery_count = _int(gallery.get("count"))
    elif gallery is not None:
        row.problems.append("malformed status: gallery is not an object")
    row.freshness_age_s = _freshness(doc)
    row.last_seen = _newest(row.last_seen, _timestamp(doc.get("ts")))


def read_state(row: DoorStatus, raw: bytes) -> None:
    doc = _json_object(raw, "gallery state", row)
    if doc is None:
        return
    status = doc.get("status")
    if status not in ("applied", "rejected"):
        row.problems.append(f"malformed gallery state: status {printable(repr(status), 40)}")
    else:
        row.applied = status
    row.last_bundle = _int(doc.get("version"))
    row.reason = _text(doc.get("reason"))
    row.fleet = _text(doc.get("fleet"))
    if row.gallery_version is None:
        row.gallery_version = _int(doc.get("running"))
    row.last_seen = _newest(row.last_seen, _timestamp(doc.get("ts")))


def _newest(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=datetime.fromisoformat)


def fleet_rows(messages: dict[str, bytes], prefix: str, fleet: str | None = None) -> list[DoorStatus]:
    """One row per door from retained `{topic: payload}`; `fleet` keeps the doors whose state names it."""
    rows: dict[str, DoorStatus] = {}
    # status first, so a state's `running` only fills in what the status did not say
    for topic in sorted(messages, key=lambda t: not t.endswith(f"/{STATUS}")):
        found = door_of(prefix, topic)
        if found is None or not messages[topic]:
            continue
        door, leaf = found
        row = rows.setdefault(door, DoorStatus(printable(door, SHOWN)))
        (read_status if leaf == STATUS else read_state)(row, messages[topic])
    chosen = [r for r in rows.values() if fleet is None or r.fleet == fleet]
    return sorted(chosen, key=lambda r: r.door)


def collect(options: BrokerOptions, prefix: str, wait_s: float) -> dict[str, bytes]:
    """The retained status and gallery-state messages of every door under `prefix`."""
    check_prefix(prefix)
    client = _connect(options)
    try:
        seen = _Retained(client, [every_device(prefix, STATUS), every_device(prefix, GALLERY_STATE)])
        time.sleep(wait_s)
        return dict(seen.messages)
    finally:
        client.disconnect()
        client.loop_stop()


COLUMNS = ("door", "online", "gallery", "last bundle", "applied", "why", "freshness", "last seen")


def table(rows: list[DoorStatus]) -> str:
    """Fixed-width text table; `-` where a door did not say."""
    lines = [list(COLUMNS)]
    for r in rows:
        online = "-" if r.online is None else ("yes" if r.online else "no")
        why = "; ".join([*([r.reason] if r.reason else []), *r.problems]) or "-"
        lines.append([
            r.door,
            online,
            _shown(r.gallery_version) + (f" ({r.gallery_count})" if r.gallery_count is not None else ""),
            _shown(r.last_bundle),
            r.applied or "-",
            why,
            "-" if r.freshness_age_s is None else f"{r.freshness_age_s:.0f} s",
            r.last_seen or "-",
        ])  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _shown(value: int | None) -> str:
    return "-" if value is None else str(value)
