"""One time format: RFC 3339 UTC with milliseconds, for events, status, gallery state and manifests."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from edgeface.util.timestamps import rfc3339


def test_rfc3339_is_utc_with_milliseconds() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert rfc3339(when) == "2026-01-02T03:04:05.678Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rfc3339())


def test_rfc3339_converts_offsets_to_utc_and_parses_back() -> None:
    when = datetime(2026, 1, 2, 5, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    text = rfc3339(when)
    assert text == "2026-01-02T03:04:05.678Z"
    assert datetime.fromisoformat(text) == when
