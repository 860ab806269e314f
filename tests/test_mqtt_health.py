"""`SpoolHealth.degraded`: which counters make the status payload report the spool (docs/design.md §6).

`test_spool_damage.py` and `test_spool_full.py` produce real health values from damaged and full spools;
here: the rule itself, one field at a time, and the dict the status payload embeds.
"""

from __future__ import annotations

from dataclasses import fields

import pytest

from edgeface.mqtt.health import SpoolHealth


def test_a_fresh_spool_is_healthy() -> None:
    assert not SpoolHealth().degraded


@pytest.mark.parametrize(
    "change",
    [
        {"mode": "memory"},
        {"quarantined_files": 1},
        {"events_lost": 1},
        {"events_lost_unknown": True},
        {"events_dropped_disk_full": 1},
    ],
    ids=lambda change: next(iter(change)),
)
def test_anything_lost_moved_aside_or_held_in_memory_is_degraded(change: dict) -> None:
    assert SpoolHealth(**change).degraded


def test_a_past_error_alone_is_not_degraded() -> None:
    """`last_error` stays after the spool is writable again: history for the log, not a degraded state."""
    assert not SpoolHealth(last_error="disk I/O error").degraded


def test_as_dict_carries_every_field_by_name() -> None:
    health = SpoolHealth("memory", 1, 2, True, 3, 4, "full")
    assert health.as_dict() == {
        "mode": "memory",
        "quarantined_files": 1,
        "events_lost": 2,
        "events_lost_unknown": True,
        "events_dropped_disk_full": 3,
        "events_in_memory": 4,
        "last_error": "full",
    }
    assert list(health.as_dict()) == [f.name for f in fields(SpoolHealth)]
