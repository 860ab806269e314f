"""The one time format on the wire and on disk: RFC 3339 in UTC with milliseconds (docs/design.md §6)."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(when: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-23T12:51:14.123Z``; now when `when` is None.

    A naive `when` is taken as local time (as `datetime.astimezone` does)."""
    moment = (when or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
